/** `agentrl serve retrieval`: the ASearcher/Search-R1 retrieval API over a local BM25 index. */
import { Command } from 'commander';
import { Bm25Index } from '../tools/bm25-index.ts';
import { startRetrievalServer } from '../tools/retrieval-server.ts';
import { startRetrievalCluster } from '../tools/retrieval-cluster.ts';
import { registerServeInference } from './serve-inference.ts';
import { registerServeGateway } from '../gateway/cli.ts';
import { registerServeTrainer } from './serve-trainer.ts';
import { port, positiveInt } from './option-parsers.ts';
import { untilSignal } from './until-signal.ts';

export interface ServeRetrievalCliOptions {
  index: string;
  host: string;
  port: number;
  /** Processes serving the index (1: this one; more: a node:cluster sharing the port). */
  workers: number;
}

const ROUTES = 'POST /retrieve, POST /access, GET /health';

/** Serve until SIGINT/SIGTERM, then close the server and the index. */
export async function runServeRetrieval(o: ServeRetrievalCliOptions): Promise<void> {
  if (o.workers > 1) return runServeRetrievalCluster(o);
  const index = new Bm25Index(o.index);
  const server = await startRetrievalServer({ backend: index, host: o.host, port: o.port }).catch((e: unknown) => {
    index.close();
    throw e;
  });
  console.log(`serving ${o.index} (${index.count()} documents) at ${server.url} — ${ROUTES}; Ctrl-C stops`);
  await untilSignal();
  await server.close();
  index.close();
  console.log('retrieval server stopped');
}

/** --workers n > 1: serve from n processes until a signal (stop them all) or until every one has died (fail). */
async function runServeRetrievalCluster(o: ServeRetrievalCliOptions): Promise<void> {
  const c = await startRetrievalCluster({ indexPath: o.index, host: o.host, port: o.port, workers: o.workers });
  console.log(`serving ${o.index} (${c.docs} documents) at ${c.url} with ${c.workers} worker processes — ${ROUTES}; Ctrl-C stops`);
  const outcome = await Promise.race([untilSignal().then(() => 'signal' as const), c.allExited.then(() => 'all exited' as const)]);
  if (outcome === 'all exited') throw new Error(`all ${c.workers} retrieval workers exited (see above); the server is down`);
  await c.close();
  console.log('retrieval server stopped');
}

export function registerServeCommands(program: Command): void {
  const serve = program.command('serve').description('Serve over HTTP: the search agent\'s tools (retrieval), the built-in engine with vLLM/SGLang-shaped endpoints (inference), an OpenAI-compatible agent gateway (gateway), the Tinker training API (trainer).');
  serve
    .command('retrieval')
    .description('Serve a BM25 index (from `agentrl index build`) with the ASearcher/Search-R1 retrieval API: POST /retrieve {"queries", "topk", "return_scores"}, POST /access {"urls"}, GET /health.')
    .requiredOption('--index <file>', 'index database')
    .option('--host <host>', 'address to listen on (0.0.0.0 serves other machines)', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', port, 8000)
    .option('--workers <n>', 'processes serving the index on the same port, each answering its own queries (BM25 search is synchronous, so one process answers one at a time); a worker that dies is reported, not restarted', positiveInt, 1)
    .action(async (o: ServeRetrievalCliOptions) => {
      await runServeRetrieval(o);
    });
  registerServeInference(serve);
  registerServeGateway(serve);
  registerServeTrainer(serve);
}
