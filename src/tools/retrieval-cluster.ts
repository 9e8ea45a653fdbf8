/**
 * The retrieval server (retrieval-server.ts) served from several processes on one port, with
 * `node:cluster`: a BM25 query is synchronous SQLite work, so one process answers one query at a
 * time and the rollout workers' queries queue behind each other; n processes answer n at once.
 *
 * The primary forks `workers` processes; each opens its own read-only Bm25Index and calls
 * startRetrievalServer on the same host/port (the cluster shares the listening socket and hands out
 * connections round-robin; with port 0 all workers get the same free port, which the primary learns
 * from the workers' `listening` messages). Nothing is restarted: a worker that dies is reported via
 * `log`, and `allExited` resolves once none are left. Workers run this very file (see the bottom),
 * with tsx loaded so the TypeScript sources run as they do in the primary.
 */
import cluster, { type Worker } from 'node:cluster';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Bm25Index } from './bm25-index.ts';
import { startRetrievalServer } from './retrieval-server.ts';

/** Set (to the JSON of a WorkerConfig) in the environment of the processes the primary forks. */
const WORKER_ENV = 'AGENTRL_RETRIEVAL_WORKER';
/** How long close() waits for a worker to stop before killing it. */
const STOP_GRACE_MS = 5_000;

interface WorkerConfig {
  indexPath: string;
  host: string;
  port: number;
}

type WorkerMessage = { type: 'listening'; url: string } | { type: 'failed'; message: string };

export interface RetrievalClusterOptions {
  /** A BM25 index built by `agentrl index build`. */
  indexPath: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port (the same one for every worker). */
  port?: number;
  /** Processes serving the index (an integer ≥ 1). */
  workers: number;
  /** Where a worker's unexpected exit is reported (default console.error). */
  log?: (line: string) => void;
}

export interface RetrievalCluster {
  /** Base URL, e.g. http://127.0.0.1:8000 */
  url: string;
  /** Number of worker processes started. */
  workers: number;
  /** Their process ids. */
  pids: number[];
  /** Passages in the index. */
  docs: number;
  /** Resolves when every worker has exited without close() being called (each exit was logged). */
  allExited: Promise<void>;
  /** Stops every worker (killing any still running after a grace period) and waits for their exits. */
  close(): Promise<void>;
}

/** `--import` arguments for the workers: tsx, unless the primary was itself started with it. */
function workerExecArgv(): string[] {
  const argv = process.execArgv;
  if (argv.some((a) => a.includes('tsx'))) return argv;
  // Resolved here, not by name in the worker, so it works whatever directory agentrl runs from
  // (bin/agentrl.mjs registers tsx through its API, which leaves no trace in execArgv).
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return [...argv, '--import', tsx];
}

function describeExit(w: Worker, code: number | null, signal: string | null): string {
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  return `retrieval worker ${w.id} (pid ${w.process.pid}) ${how}`;
}

export async function startRetrievalCluster(opts: RetrievalClusterOptions): Promise<RetrievalCluster> {
  const { indexPath, host = '127.0.0.1', port = 8000, workers, log = (line: string) => console.error(line) } = opts;
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be an integer ≥ 1 (got ${workers})`);
  if (!cluster.isPrimary) throw new Error('startRetrievalCluster must run in a cluster primary, not in a cluster worker');
  // Opened once here so a missing or invalid index fails with Bm25Index's message before any fork.
  const probe = new Bm25Index(indexPath);
  const docs = probe.count();
  probe.close();

  const config: WorkerConfig = { indexPath, host, port };
  cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), execArgv: workerExecArgv(), args: [] });
  const live = new Set<Worker>();
  let closing = false;
  let resolveAllExited!: () => void;
  const allExited = new Promise<void>((resolve) => (resolveAllExited = resolve));
  const exits: Promise<void>[] = [];

  const stop = async (): Promise<void> => {
    closing = true;
    for (const w of live) {
      if (w.isConnected()) w.send({ type: 'stop' });
      else w.process.kill('SIGKILL');
    }
    const timer = setTimeout(() => {
      for (const w of live) w.process.kill('SIGKILL');
    }, STOP_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(timer);
  };

  const listening = [...Array(workers)].map(() => {
    const w = cluster.fork({ [WORKER_ENV]: JSON.stringify(config) });
    live.add(w);
    let listened = false; // until then, its exit fails the start instead of being logged
    exits.push(new Promise<void>((resolve) => w.once('exit', () => resolve())));
    w.once('exit', (code, signal) => {
      live.delete(w);
      if (closing || !listened) return;
      log(`${describeExit(w, code, signal)}; ${live.size} of ${workers} left${live.size === 0 ? '' : ', not restarted'}`);
      if (live.size === 0) resolveAllExited();
    });
    return new Promise<string>((resolve, reject) => {
      w.on('message', (m: WorkerMessage | undefined) => {
        if (m?.type === 'listening') {
          listened = true;
          resolve(m.url);
        } else if (m?.type === 'failed') reject(new Error(m.message));
      });
      w.once('exit', (code, signal) => reject(new Error(`${describeExit(w, code, signal)} before it was serving`)));
    });
  });

  let urls: string[];
  try {
    urls = await Promise.all(listening);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url: urls[0]!,
    workers,
    pids: [...live].map((w) => w.process.pid!),
    docs,
    allExited,
    close: stop,
  };
}

/** A forked worker: serve the index until the primary says stop (or goes away). */
async function runWorker(config: WorkerConfig): Promise<void> {
  // The message must reach the primary before a failing worker exits, hence the callback.
  const send = (m: WorkerMessage) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));
  // Ctrl-C signals the whole process group; the primary decides when workers stop.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  let stop: () => void = () => process.exit(0); // until serving: nothing to close
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'stop') stop();
  });
  let index: Bm25Index | undefined;
  try {
    index = new Bm25Index(config.indexPath);
    const server = await startRetrievalServer({ backend: index, host: config.host, port: config.port });
    const opened = index;
    stop = () =>
      void server.close().finally(() => {
        opened.close();
        process.exit(0);
      });
    await send({ type: 'listening', url: server.url });
  } catch (e) {
    index?.close();
    await send({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  }
}

const workerConfig = cluster.isWorker ? process.env[WORKER_ENV] : undefined;
if (workerConfig !== undefined) void runWorker(JSON.parse(workerConfig) as WorkerConfig);
