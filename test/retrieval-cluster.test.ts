/**
 * The retrieval server as a node:cluster (src/tools/retrieval-cluster.ts, `serve retrieval --workers`)
 * over a real BM25 index and real sockets on 127.0.0.1: two worker processes share one port (0 → one
 * free port for both), answer concurrent /retrieve requests exactly as an in-process Bm25Index does,
 * both answer /health (seen by its pid), and close() leaves no worker alive. Through the CLI: a worker
 * that dies is reported and not restarted, the primary exits 1 once none are left and 0 on SIGTERM
 * (taking its workers with it); `--workers 0` and `--workers abc` are refused naming the option.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Command, CommanderError } from 'commander';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bm25Index, buildIndex } from '../src/tools/bm25-index.ts';
import { startRetrievalCluster } from '../src/tools/retrieval-cluster.ts';
import { registerServeCommands } from '../src/cli/serve.ts';

const ROOT = join(import.meta.dirname, '..');
const ENV = { ...process.env, AGENTRL_THREADS: '1' };

const TOPICS = ['moon', 'mars', 'saturn', 'apollo', 'rocket', 'orbit', 'comet', 'venus', 'jupiter', 'eclipse'];
// 30 passages, each about two topics with different weights, so queries get distinct ranked lists.
const CORPUS = [...Array(30)].map((_, i) => {
  const a = TOPICS[i % TOPICS.length]!;
  const b = TOPICS[(i * 3 + 1) % TOPICS.length]!;
  return { id: `p${i}`, title: `${a} note ${i}`, contents: `${`${a} `.repeat(1 + (i % 3))}and ${`${b} `.repeat(1 + (i % 4))}passage number ${i}.` };
});
const QUERIES = [...Array(40)].map((_, i) => `${TOPICS[i % TOPICS.length]} ${TOPICS[(i * 7 + 3) % TOPICS.length]}${i % 5 === 0 ? ' the' : ''}`);

let dir = '';
let indexPath = '';
let index: Bm25Index;
const children: ChildProcess[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentrl-retrieval-cluster-'));
  writeFileSync(join(dir, 'corpus.jsonl'), CORPUS.map((d) => JSON.stringify(d)).join('\n') + '\n');
  indexPath = join(dir, 'index.db');
  await buildIndex(join(dir, 'corpus.jsonl'), indexPath);
  index = new Bm25Index(indexPath);
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One request on a fresh connection (no keep-alive agent), so the cluster may hand it to any worker. */
function httpJson(url: string, method: 'GET' | 'POST', body?: object): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(url, { method, agent: false, headers: text === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(data) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** Pids seen answering /health, asking in rounds of 8 fresh connections until `want` distinct ones answered (at most 20 rounds). */
async function healthPids(url: string, want: number): Promise<Set<number>> {
  const pids = new Set<number>();
  for (let round = 0; round < 20 && pids.size < want; round++) {
    const answers = await Promise.all([...Array(8)].map(() => httpJson(`${url}/health`, 'GET')));
    for (const a of answers) {
      expect(a).toMatchObject({ status: 200, json: { status: 'ok', backend: 'bm25' } });
      pids.add(a.json.pid);
    }
  }
  return pids;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startRetrievalCluster', () => {
  it('two workers on one port answer concurrent queries exactly as the index does; both serve; close() stops both', async () => {
    const logged: string[] = [];
    const c = await startRetrievalCluster({ indexPath, port: 0, workers: 2, log: (l) => logged.push(l) });
    try {
      expect(c.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(c.url).not.toMatch(/:0$/);
      expect(c.workers).toBe(2);
      expect(c.docs).toBe(30);
      expect(new Set(c.pids).size).toBe(2);
      expect(c.pids).not.toContain(process.pid);

      const retrieves = QUERIES.map((q, i) => httpJson(`${c.url}/retrieve`, 'POST', { queries: [q], topk: 1 + (i % 5), return_scores: true }));
      const healths = [...Array(10)].map(() => httpJson(`${c.url}/health`, 'GET'));
      const [answers, health] = await Promise.all([Promise.all(retrieves), Promise.all(healths)]);
      answers.forEach((a, i) => {
        const expected = index.searchSync(QUERIES[i]!, 1 + (i % 5)).map(({ score, ...d }) => ({ document: { id: d.id, contents: d.contents, title: d.title, url: d.url }, score }));
        expect(expected.length).toBeGreaterThan(0);
        expect(a).toEqual({ status: 200, json: { result: [expected] } });
      });
      for (const h of health) expect(c.pids).toContain(h.json.pid);

      const pids = await healthPids(c.url, 2);
      expect([...pids].sort()).toEqual([...c.pids].sort());
    } finally {
      await c.close();
    }
    for (const pid of c.pids) expect(isAlive(pid)).toBe(false);
    expect(logged).toEqual([]); // a stop asked for is not reported as a worker dying
  });

  it('refuses a missing index before forking, with Bm25Index\'s message', async () => {
    await expect(startRetrievalCluster({ indexPath: join(dir, 'nope.db'), port: 0, workers: 2 })).rejects.toThrow(/nope\.db not found; build it with: agentrl index build/);
  });
});

interface Cli {
  proc: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `agentrl serve retrieval --workers 2` as a user runs it; resolves with the URL it prints. */
function startCli(): Promise<Cli> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', 'retrieval', '--index', indexPath, '--port', '0', '--workers', '2'], { cwd: ROOT, env: ENV });
  children.push(proc);
  let stdout = '', stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /at (http:\/\/127\.0\.0\.1:\d+) with 2 worker processes/.exec(stdout);
      if (m) resolve({ proc, url: m[1]!, stdout: () => stdout, stderr: () => stderr, exited });
    });
    void exited.then((code) => reject(new Error(`serve retrieval exited with ${code} before serving: ${stderr}`)));
  });
}

describe('agentrl serve retrieval --workers (child process)', () => {
  it('stops its workers and exits 0 on SIGTERM; a dead worker is reported, and the primary exits 1 once none are left', async () => {
    const [a, b] = await Promise.all([startCli(), startCli()]);
    expect(a.stdout()).toMatch(/\(30 documents\)/);

    // SIGTERM: the primary stops both workers and exits 0.
    const aPids = [...(await healthPids(a.url, 2))];
    expect(aPids).toHaveLength(2);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(a.stdout()).toMatch(/retrieval server stopped/);
    expect(a.stderr()).toBe('');
    for (const pid of aPids) expect(isAlive(pid)).toBe(false);

    // Workers killed one by one: each death is logged, the other keeps serving, the last one ends it.
    const [first, second] = [...(await healthPids(b.url, 2))] as [number, number];
    process.kill(first, 'SIGKILL');
    await expect.poll(() => b.stderr(), { timeout: 5000 }).toMatch(new RegExp(`retrieval worker \\d \\(pid ${first}\\) was killed by SIGKILL; 1 of 2 left, not restarted`));
    const still = await httpJson(`${b.url}/retrieve`, 'POST', { queries: ['mars'], topk: 2 });
    expect(still.json.result[0].map((d: { id: string }) => d.id)).toEqual(index.searchSync('mars', 2).map((h) => h.id));
    expect((await httpJson(`${b.url}/health`, 'GET')).json.pid).toBe(second);
    process.kill(second, 'SIGKILL');
    expect(await b.exited).toBe(1);
    expect(b.stderr()).toMatch(new RegExp(`retrieval worker \\d \\(pid ${second}\\) was killed by SIGKILL; 0 of 2 left`));
    expect(b.stderr()).toMatch(/agentrl: all 2 retrieval workers exited \(see above\); the server is down/);
  });

  it('refuses --workers 0 and --workers abc, naming the option', async () => {
    // The CLI's own commander setup, parsed in-process (a child process per value would cost seconds).
    const refusal = async (value: string) => {
      let stderr = '';
      const program = new Command().exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
      registerServeCommands(program);
      const e: unknown = await program.parseAsync(['serve', 'retrieval', '--index', indexPath, '--workers', value], { from: 'user' }).then(() => null, (err: unknown) => err);
      expect(e).toBeInstanceOf(CommanderError);
      expect((e as CommanderError).exitCode).not.toBe(0);
      return stderr;
    };
    expect(await refusal('0')).toMatch(/option '--workers <n>' argument '0' is invalid\. expected an integer ≥ 1, got '0'/);
    expect(await refusal('abc')).toMatch(/option '--workers <n>' argument 'abc' is invalid\. expected an integer, got 'abc'/);
  });
});
