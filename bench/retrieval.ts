/**
 * `npm run bench:retrieval [-- --quick] [--docs N] [--concurrent C] [--write]`: queries per second of
 * `agentrl serve retrieval` with 1 worker process against 2 (`--workers 2`, node:cluster), on the
 * synthetic corpus of examples/index-1m.ts (bench/synthetic-corpus.ts: Zipf-distributed words, so
 * common query words hit long posting lists), with C requests in flight from this process. The arms alternate (1, 2, 1, 2, …) so drifts in machine
 * load hit both; the medians are compared. Every answer is checked against the in-process index.
 * With --write the table goes to docs/results/retrieval-workers.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:http';
import { Bm25Index, buildIndex } from '../src/tools/bm25-index.ts';
import { startRetrievalCluster } from '../src/tools/retrieval-cluster.ts';
import { mulberry32 } from '../src/envs/rng.ts';
import { median } from './common.ts';
import { makeVocabulary, writeCorpus, zipf } from './synthetic-corpus.ts';

const args = process.argv.slice(2);
const flag = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes('--quick');
const docs = flag('--docs', quick ? 5_000 : 100_000);
const concurrent = flag('--concurrent', 16);
const queries = flag('--queries', quick ? 200 : 2_000);
const repeats = flag('--repeats', quick ? 1 : 3);
const VOCAB = 50_000;

function post(agent: Agent, url: string, body: unknown): Promise<unknown> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(`${url}/retrieve`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** Queries per second with `concurrent` requests in flight; every answer compared with `expected`. */
async function measure(url: string, qs: string[][], expected: string[]): Promise<number> {
  // Fresh keep-alive connections per measurement, as many as requests in flight, so the cluster can spread them.
  const agent = new Agent({ keepAlive: true, maxSockets: concurrent });
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrent }, async () => {
    while (next < qs.length) {
      const i = next++;
      const got = (await post(agent, url, { queries: [qs[i]!.join(' ')], topk: 5 })) as { result: { id: string }[][] };
      const ids = got.result[0]!.map((d) => d.id).join(',');
      if (ids !== expected[i]) throw new Error(`query ${i}: the server answered ${ids}, the index ${expected[i]}`);
    }
  }));
  agent.destroy();
  return qs.length / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'agentrl-bench-retrieval-'));
  try {
    const vocab = makeVocabulary(VOCAB, mulberry32(0));
    const corpus = join(dir, 'corpus.jsonl');
    const db = join(dir, 'index.db');
    let t = performance.now();
    await writeCorpus(corpus, docs, vocab, mulberry32(1));
    await buildIndex(corpus, db);
    console.log(`corpus: ${docs} passages, index built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    // Queries of 3–5 words from the same distribution.
    const rand = mulberry32(2);
    const rank = zipf(VOCAB, 1.0, rand);
    const qs = Array.from({ length: queries }, () => Array.from({ length: 3 + Math.floor(rand() * 3) }, () => vocab[rank()]!));
    const index = new Bm25Index(db);
    t = performance.now();
    const expected = qs.map((q) => index.searchSync(q.join(' '), 5).map((h) => h.id).join(','));
    const inProcess = queries / ((performance.now() - t) / 1000);
    index.close();
    console.log(`in-process index, one query at a time: ${inProcess.toFixed(0)} queries/s`);

    const rates: Record<1 | 2, number[]> = { 1: [], 2: [] };
    for (let r = 0; r < repeats; r++) {
      for (const workers of [1, 2] as const) {
        const c = await startRetrievalCluster({ indexPath: db, port: 0, workers });
        try {
          await measure(c.url, qs.slice(0, Math.min(50, qs.length)), expected); // warm-up: page cache, JIT
          const rate = await measure(c.url, qs, expected);
          rates[workers].push(rate);
          console.log(`repeat ${r + 1}: ${workers} worker${workers > 1 ? 's' : ''}: ${rate.toFixed(0)} queries/s (${concurrent} in flight)`);
        } finally {
          await c.close();
        }
      }
    }
    const one = median(rates[1]);
    const two = median(rates[2]);
    const result = {
      docs, queries, concurrent, repeats, cpus: cpus().length, load_average_end: loadavg().map((x) => +x.toFixed(2)),
      in_process_queries_per_s: +inProcess.toFixed(1), workers_1_queries_per_s: +one.toFixed(1), workers_2_queries_per_s: +two.toFixed(1),
      ratio: +(two / one).toFixed(2), runs: rates, quick, date: new Date().toISOString(),
    };
    console.log(`median: 1 worker ${one.toFixed(0)} queries/s, 2 workers ${two.toFixed(0)} queries/s → ${result.ratio}×`);
    if (args.includes('--write')) {
      const md = [
        '# Retrieval server: one process against two (`agentrl serve retrieval --workers 2`)', '',
        'Command: `npm run bench:retrieval -- --write`. The corpus is `examples/index-1m.ts`\'s (bench/synthetic-corpus.ts): 60–100 Zipf-distributed words per passage from 50,000 made-up words. Queries are 3–5 words from the same distribution, top 5.',
        `${concurrent} requests are in flight from the benchmark process, on the same ${result.cpus}-core machine. The arms alternate, and every answer is checked against the in-process index.`, '',
        '| | queries/s (median of ' + repeats + ') | runs |', '|---|---|---|',
        `| in-process index, one query at a time | ${inProcess.toFixed(0)} | |`,
        `| server, 1 worker | ${one.toFixed(0)} | ${rates[1].map((x) => x.toFixed(0)).join(', ')} |`,
        `| server, 2 workers | ${two.toFixed(0)} | ${rates[2].map((x) => x.toFixed(0)).join(', ')} |`, '',
        `2 workers / 1 worker: **${result.ratio}×** (${docs} passages, ${queries} queries per measurement). The client shares the 2 cores with the workers.`, '',
        '```json', JSON.stringify(result), '```', '',
      ];
      writeFileSync('docs/results/retrieval-workers.md', md.join('\n'));
      console.log('wrote docs/results/retrieval-workers.md');
    }
    console.log(JSON.stringify(result));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
