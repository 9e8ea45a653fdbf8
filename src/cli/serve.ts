/** `agentrl serve retrieval`: the ASearcher/Search-R1 retrieval API over a local BM25 index. */
import { Command } from 'commander';
import { Bm25Index } from '../tools/bm25-index.ts';
import { startRetrievalServer } from '../tools/retrieval-server.ts';
import { registerServeInference } from './serve-inference.ts';
import { registerServeGateway } from '../gateway/cli.ts';
import { registerServeTrainer } from './serve-trainer.ts';
import { port } from './option-parsers.ts';

export interface ServeRetrievalCliOptions {
  index: string;
  host: string;
  port: number;
}

/** Serve until SIGINT/SIGTERM, then close the server and the index. */
export async function runServeRetrieval(o: ServeRetrievalCliOptions): Promise<void> {
  const index = new Bm25Index(o.index);
  const server = await startRetrievalServer({ backend: index, host: o.host, port: o.port }).catch((e: unknown) => {
    index.close();
    throw e;
  });
  console.log(`serving ${o.index} (${index.count()} documents) at ${server.url} — POST /retrieve, POST /access, GET /health; Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  index.close();
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
    .action(async (o: ServeRetrievalCliOptions) => {
      await runServeRetrieval(o);
    });
  registerServeInference(serve);
  registerServeGateway(serve);
  registerServeTrainer(serve);
}
