/** `agentrl index build`: a BM25 index (SQLite FTS5) from a JSONL corpus, with a progress bar. */
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { buildIndex, type BuildIndexResult } from '../tools/bm25-index.ts';

export interface IndexBuildCliOptions {
  out: string;
  batch?: number;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${v}'`);
  return n;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export async function runIndexBuild(corpus: string, o: IndexBuildCliOptions): Promise<BuildIndexResult> {
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new cliProgress.SingleBar({ format: 'indexing |{bar}| {percentage}% | {read} of {size} | {docs} docs | {rate} docs/s | ETA {remaining}', hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  const started = performance.now();
  let shown = false;
  const result = await buildIndex(corpus, o.out, {
    batchSize: o.batch,
    onProgress: (read, total, docs) => {
      if (!bar) return;
      const seconds = (performance.now() - started) / 1000;
      // Our own ETA: cli-progress's reads INF while the byte count stalls between the stream's 1 MB reads.
      const remaining = read > 0 ? `${Math.round(((total - read) * seconds) / read)}s` : '-';
      const payload = { read: megabytes(read), size: megabytes(total), docs, rate: Math.round(docs / seconds), remaining };
      if (!shown) bar.start(total, read, payload);
      else bar.update(read, payload);
      shown = true;
    },
  }).finally(() => bar?.stop());
  console.log(`indexed ${result.docs} documents in ${result.seconds.toFixed(1)} s (${Math.round(result.docs / result.seconds)} docs/s); wrote ${o.out} (${megabytes(result.dbBytes)})`);
  return result;
}

export function registerIndexCommands(program: Command): void {
  const index = program.command('index').description('Local search indexes for the search agent.');
  index
    .command('build')
    .description('Build a BM25 index (SQLite FTS5) from a JSONL corpus of {id, url?, title?, contents} lines (`text` is read as `contents`; a missing url becomes corpus://<id>). Serve it with `agentrl serve retrieval`.')
    .argument('<corpus>', 'corpus JSONL file')
    .requiredOption('--out <file>', 'index database to write (replaced only once the new one is complete)')
    .option('--batch <n>', 'documents per transaction (default 10000)', positiveInt)
    .action(async (corpus: string, o: IndexBuildCliOptions) => {
      await runIndexBuild(corpus, o);
    });
}
