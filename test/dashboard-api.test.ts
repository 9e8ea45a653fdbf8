/**
 * The dashboard's data side: the trajectory logger (what a logged line holds, which steps and
 * trajectories are logged, the token cap, per-opponent statistics) and the HTTP API over damaged
 * and live run directories (a truncated last metrics line, a missing checkpoint, a huge trajectory
 * served in pages, a file over the size limit, the token off loopback, refused traversal and
 * foreign Host headers).
 */
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenSource, type Sample, type Trajectory } from '../src/core/types.ts';
import { createTrajectoryLog, evenlySpaced, LogSectionSchema, opponentStats, trajectoryFileName, withCredit, type LoggedTrajectory } from '../src/run/trajectory-log.ts';
import { startDashboard, type Dashboard } from '../src/dashboard/server.ts';
import { pageTrajectory } from '../src/dashboard/run-reader.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'agentrl-dashboard-'));

/** A trajectory with one sample: `prompt` context tokens, then `model` sampled tokens (logprob −0.5·(i+1), version 3). */
function traj(id: string, opponent: string, reward: number, prompt: number, model: number, episodes = [{ reward, won: reward > 0, done: true, seat: '' }]): Trajectory {
  const n = prompt + model;
  const sample: Sample = {
    seq: {
      ids: Array.from({ length: n }, (_, i) => i),
      logprobs: Array.from({ length: n }, (_, i) => (i < prompt ? 0 : -0.5 * (i - prompt + 1))),
      versions: Array.from({ length: n }, (_, i) => (i < prompt ? -1 : 3)),
      mask: Array.from({ length: n }, (_, i) => (i < prompt ? 0 : 1)),
      source: Array.from({ length: n }, (_, i) => (i < prompt ? TokenSource.prompt : TokenSource.model)),
    },
    reward, keys: { group: id },
  };
  return { id, groupId: 'g0', samples: [sample], reward, episodes, opponent, info: { note: id } };
}

const decode = (ids: number[]) => ids.map((id) => `t${id}`);

describe('TrajectoryLog', () => {
  it('logs due steps only, evenly spaced trajectories, every token field, credited returns and advantages', () => {
    const out = tmp();
    const log = createTrajectoryLog(out, { every: 2, perStep: 2 });
    const batch = [traj('a', 'x', 1, 2, 2), traj('b', 'y', -1, 1, 1), traj('c', 'x', 0.5, 1, 3), traj('d', 'y', 0, 1, 1)];
    // onBatch's samples: the same samples, shallow-copied with ret and advantage filled.
    const credited = withCredit(batch, batch.flatMap((t, i) => t.samples.map((s) => ({ ...s, ret: t.reward, advantage: i - 1.5 }))));
    expect(log.record(1, credited, decode)).toBeNull();
    const path = log.record(2, credited, decode, { trainerVersion: 4 });
    expect(path).toBe(join(out, 'trajectories', 'step-000002.jsonl'));
    expect(readdirSync(join(out, 'trajectories'))).toEqual(['step-000002.jsonl']); // no temporary file left
    const lines = readFileSync(path!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LoggedTrajectory);
    // 2 of 4, evenly spaced: batch positions 0 and 2.
    expect(lines.map((l) => [l.id, l.batchIndex])).toEqual([['a', 0], ['c', 2]]);
    const a = lines[0]!;
    expect(a).toMatchObject({ step: 2, trainerVersion: 4, opponent: 'x', reward: 1, info: { note: 'a' }, totalTokens: 4, droppedTokens: 0 });
    expect(a.samples[0]!).toMatchObject({ reward: 1, ret: 1, advantage: -1.5, keys: { group: 'a' } });
    expect(a.samples[0]!.tokens).toEqual({
      ids: [0, 1, 2, 3], text: ['t0', 't1', 't2', 't3'], logprobs: [0, 0, -0.5, -1], versions: [-1, -1, 3, 3], mask: [0, 0, 1, 1], source: [0, 0, 1, 1],
    });
    expect(lines[1]!.samples[0]!.advantage).toBe(0.5);
  });

  it('cuts a trajectory at maxTokens and says how many tokens were dropped', () => {
    const out = tmp();
    const log = createTrajectoryLog(out, { every: 1, perStep: 1, maxTokens: 5 });
    const path = log.record(0, [traj('long', '', 0, 3, 7)], decode)!;
    const t = JSON.parse(readFileSync(path, 'utf8')) as LoggedTrajectory;
    expect(t.samples[0]!.tokens.ids).toEqual([0, 1, 2, 3, 4]);
    expect(t.samples[0]!.droppedTokens).toBe(5);
    expect(t).toMatchObject({ totalTokens: 10, droppedTokens: 5 });
  });

  it('per-token advantages are cut with the tokens, and paged with them', () => {
    const t = traj('p', '', 1, 2, 4);
    const credited = withCredit([t], [{ ...t.samples[0]!, ret: 1, advantage: [0, 0, 0.1, 0.2, 0.3, 0.4] }]);
    const path = createTrajectoryLog(tmp(), { every: 1, maxTokens: 5 }).record(0, credited, decode)!;
    const logged = JSON.parse(readFileSync(path, 'utf8')) as LoggedTrajectory;
    expect(logged.samples[0]!.advantage).toEqual([0, 0, 0.1, 0.2, 0.3]);
    const page = pageTrajectory(logged, { sampleOffset: 0, sampleLimit: 1, tokenOffset: 3, tokenLimit: 10 });
    expect(page.samples[0]).toMatchObject({ index: 0, tokenTotal: 5, tokenOffset: 3, advantage: [0.2, 0.3] });
    expect(page.samples[0]!.tokens).toEqual({ ids: [3, 4], text: ['t3', 't4'], logprobs: [-1, -1.5], versions: [3, 3], mask: [1, 1], source: [1, 1] });
    expect(page.notes).toEqual(['1 token was not logged (log.trajectories.maxTokens)']);
  });

  it('rejects a bad section, a decode of the wrong length and samples that do not match the trajectories', () => {
    expect(() => createTrajectoryLog(tmp(), { every: -1 })).toThrow(/every/);
    expect(LogSectionSchema.parse({})).toEqual({ trajectories: { every: 10, perStep: 4, maxTokens: 100_000 } });
    const log = createTrajectoryLog(tmp(), { every: 1 });
    expect(() => log.record(0, [traj('a', '', 0, 1, 1)], () => ['only one'])).toThrow(/one string per id/);
    expect(() => withCredit([traj('a', '', 0, 1, 1)], [])).toThrow(/0 samples but its trajectories hold 1/);
    expect(evenlySpaced(10, 3)).toEqual([0, 3, 6]);
    expect(evenlySpaced(2, 5)).toEqual([0, 1]);
    expect(trajectoryFileName(12)).toBe('step-000012.jsonl');
  });

  it('opponentStats: mean reward and per-episode reward and win rate by opponent', () => {
    const ep = (r: number[]) => r.map((reward) => ({ reward, won: reward > 0, done: true, seat: '' }));
    const s = opponentStats([traj('a', 'x', 1, 1, 1, ep([1, 0])), traj('b', 'x', 2, 1, 1, ep([-1, 2, 1])), traj('c', 'y', -1, 1, 1, ep([-1]))]);
    expect(s).toEqual({
      x: { trajectories: 2, meanReward: 1.5, episodeReward: [0, 1, 1], winRate: [0.5, 0.5, 1] },
      y: { trajectories: 1, meanReward: -1, episodeReward: [-1], winRate: [0] },
    });
  });
});

// ── the HTTP API ─────────────────────────────────────────────────────────────────────────────

const metric = (step: number, extra: Record<string, unknown> = {}) => JSON.stringify({ step, version: step, meanReward: step / 10, loss: 0.5 - step / 100, ...extra });

function writeRun(dir: string, o: { steps: number; lines: string[]; checkpoint?: boolean; evalJson?: boolean; checkpointEvery?: number }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ name: 'r', task: 'kuhn', trainer: { steps: o.steps }, checkpointEvery: o.checkpointEvery ?? 50 }));
  writeFileSync(join(dir, 'metrics.jsonl'), o.lines.join(''));
  if (o.checkpoint) {
    mkdirSync(join(dir, 'checkpoint'));
    writeFileSync(join(dir, 'checkpoint', 'manifest.json'), '{}');
  }
  if (o.evalJson) writeFileSync(join(dir, 'eval.json'), JSON.stringify({ config: {}, reports: [{ policy: 'p', opponents: [] }] }));
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
const getJson = async (url: string, headers: Record<string, string> = {}) => {
  const r = await get(url, headers);
  return { status: r.status, json: JSON.parse(r.body) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
};

describe('dashboard API', () => {
  const root = tmp();
  let d: Dashboard;
  let base: string;
  const HUGE_TOKENS = 30_000;
  const HUGE_SAMPLES = 151;
  const sizeOf = (f: string) => statSync(join(root, 'big', 'trajectories', f)).size;

  beforeAll(async () => {
    writeRun(join(root, 'done'), { steps: 3, lines: [0, 1, 2].map((s) => metric(s) + '\n'), checkpoint: true, evalJson: true });
    // Killed while writing line 3: the last line has no newline.
    writeRun(join(root, 'truncated'), { steps: 10, lines: [metric(0) + '\n', metric(1) + '\n', metric(2).slice(0, 17)], checkpoint: true });
    writeRun(join(root, 'badline'), { steps: 10, lines: [metric(0) + '\n', 'not json\n', metric(2) + '\n'], checkpoint: true });
    writeRun(join(root, 'nocheckpoint'), { steps: 2, lines: [metric(0) + '\n', metric(1) + '\n'] });
    // A run that stopped long ago (no eval.json, 1 of 10 steps).
    writeRun(join(root, 'group', 'old'), { steps: 10, lines: [metric(0) + '\n'], checkpoint: true });
    for (const f of ['config.json', 'metrics.jsonl', 'checkpoint']) utimesSync(join(root, 'group', 'old', f), new Date(2020, 0, 1), new Date(2020, 0, 1));
    // A huge trajectory (one 30,000-token sample and 150 small ones) and a file over the size limit.
    const big = join(root, 'big');
    writeRun(big, { steps: 10, lines: [metric(0) + '\n'], checkpoint: true });
    const huge = traj('huge', 'x', 1, 10, HUGE_TOKENS - 10);
    for (let i = 1; i < HUGE_SAMPLES; i++) huge.samples.push(traj(`s${i}`, 'x', 0, 1, 1).samples[0]!);
    createTrajectoryLog(big, { every: 1, perStep: 1 }).record(0, [huge], decode, { trainerVersion: 5 });
    createTrajectoryLog(big, { every: 1, perStep: 40 }).record(1, Array.from({ length: 40 }, (_, i) => traj(`m${i}`, 'y', i, 1500, 1500)), decode);
    // The huge trajectory's file is under the test's 2 MiB limit, the other one over it.
    expect(sizeOf('step-000000.jsonl')).toBeLessThan(2 << 20);
    expect(sizeOf('step-000001.jsonl')).toBeGreaterThan(2 << 20);
    d = await startDashboard({ runsDir: root, limits: { maxTrajectoryFileBytes: 2 << 20 } });
    base = d.url.replace(/\/$/, '');
  });
  afterAll(() => d.close());

  it('lists every run with its status, nested runs included', async () => {
    const { json } = await getJson(`${base}/api/runs`);
    const by = Object.fromEntries((json.runs as { id: string; status: string; steps: number }[]).map((r) => [r.id, r]));
    expect(Object.keys(by).sort()).toEqual(['badline', 'big', 'done', 'group/old', 'nocheckpoint', 'truncated']);
    expect(by.done).toMatchObject({ status: 'finished', steps: 3, totalSteps: 3 });
    expect(by.truncated).toMatchObject({ status: 'training', steps: 2 });
    expect(by['group/old']).toMatchObject({ status: 'stopped', steps: 1 });
  });

  it('metrics: all rows, then only new ones (?since), with the generation of the file', async () => {
    const a = await getJson(`${base}/api/metrics?run=done`);
    expect(a.json.rows.map((r: { line: number; data: { meanReward: number } }) => [r.line, r.data.meanReward])).toEqual([[0, 0], [1, 0.1], [2, 0.2]]);
    expect(a.json.warnings).toEqual([]);
    const b = await getJson(`${base}/api/metrics?run=done&since=2&gen=${a.json.generation}`);
    expect(b.json).toMatchObject({ from: 2, total: 3 });
    expect(b.json.rows.map((r: { line: number }) => r.line)).toEqual([2]);
    // Another generation than the client's: everything again.
    expect((await getJson(`${base}/api/metrics?run=done&since=2&gen=999999`)).json.rows).toHaveLength(3);
  });

  it('a truncated last line of metrics.jsonl is skipped and reported; once completed it is read', async () => {
    const a = await getJson(`${base}/api/metrics?run=truncated`);
    expect(a.json.rows).toHaveLength(2);
    expect(a.json.warnings).toEqual([{ file: 'metrics.jsonl', message: expect.stringMatching(/last line is incomplete \(17 bytes/) }]);
    const run = await getJson(`${base}/api/run?run=truncated`);
    expect(run.json.warnings.map((w: { message: string }) => w.message).join('\n')).toMatch(/last line is incomplete/);
    appendFileSync(join(root, 'truncated', 'metrics.jsonl'), metric(2).slice(17) + '\n');
    const b = await getJson(`${base}/api/metrics?run=truncated&since=2&gen=${a.json.generation}`);
    expect(b.json.rows.map((r: { line: number; data: { meanReward: number } }) => [r.line, r.data.meanReward])).toEqual([[2, 0.2]]);
    expect(b.json.warnings).toEqual([]);
  });

  it('an unparseable line is skipped and named; the rows keep their line numbers', async () => {
    const { json } = await getJson(`${base}/api/metrics?run=badline`);
    expect(json.rows.map((r: { line: number }) => r.line)).toEqual([0, 2]);
    expect(json.warnings).toEqual([{ file: 'metrics.jsonl', message: expect.stringMatching(/^line 2 does not parse/) }]);
  });

  it('a finished run without a checkpoint, and a stopped run, say so', async () => {
    const a = await getJson(`${base}/api/run?run=nocheckpoint`);
    expect(a.json).toMatchObject({ status: 'finished', hasCheckpoint: false, config: { name: 'r' } });
    expect(a.json.warnings).toEqual([{ file: 'checkpoint/', message: expect.stringMatching(/missing .*cannot be resumed/) }]);
    const b = await getJson(`${base}/api/run?run=${encodeURIComponent('group/old')}`);
    expect(b.json.warnings.map((w: { message: string }) => w.message)).toEqual([expect.stringMatching(/after 1 of 10 steps: the run stopped/)]);
    const c = await getJson(`${base}/api/run?run=done`);
    expect(c.json).toMatchObject({ status: 'finished', hasCheckpoint: true, warnings: [], eval: { reports: [{ policy: 'p' }] } });
    expect(c.json.eval.config).toBeUndefined();
  });

  it('a huge trajectory is served in pages of samples and tokens, with a note', async () => {
    const { json: index } = await getJson(`${base}/api/trajectories?run=big`);
    const step0 = index.files.find((f: { step: number }) => f.step === 0);
    expect(step0.trajectories).toEqual([expect.objectContaining({ id: 'huge', samples: HUGE_SAMPLES, tokens: HUGE_TOKENS + 2 * (HUGE_SAMPLES - 1), minVersion: 3, maxVersion: 3, trainerVersion: 5, staleness: 2 })]);
    const { json: t } = await getJson(`${base}/api/trajectory?run=big&step=0&index=0`);
    expect(t).toMatchObject({ id: 'huge', sampleTotal: HUGE_SAMPLES, sampleOffset: 0 });
    expect(t.samples).toHaveLength(100);
    expect(t.samples[0]).toMatchObject({ index: 0, tokenTotal: HUGE_TOKENS, tokenOffset: 0 });
    expect(t.samples[0].tokens.ids).toHaveLength(2000);
    expect(t.notes.join(' ')).toMatch(/large trajectory: 30,300 tokens in 151 samples/);
    // The last page of the big sample: tokens 29,990 … 29,999 (ids equal positions; model logprob −0.5·(i − 9)).
    const { json: p } = await getJson(`${base}/api/trajectory?run=big&step=0&index=0&sampleOffset=0&sampleLimit=1&tokenOffset=29990&tokenLimit=100`);
    expect(p.samples[0].tokens.ids).toEqual(Array.from({ length: 10 }, (_, i) => 29_990 + i));
    expect(p.samples[0].tokens.text[9]).toBe('t29999');
    expect(p.samples[0].tokens.logprobs[9]).toBe(-0.5 * (29_999 - 9));
    const { json: last } = await getJson(`${base}/api/trajectory?run=big&step=0&index=0&sampleOffset=150`);
    expect(last.samples.map((s: { index: number }) => s.index)).toEqual([150]);
  });

  it('a trajectory file over the size limit is listed with a warning and not parsed', async () => {
    const { json } = await getJson(`${base}/api/trajectories?run=big`);
    const f1 = json.files.find((f: { step: number }) => f.step === 1);
    expect(f1).toMatchObject({ tooLarge: true, trajectories: [] });
    expect(json.warnings).toEqual([{ file: 'trajectories/step-000001.jsonl', message: expect.stringMatching(/MiB, over the dashboard's limit of 2 MiB: not shown/) }]);
    expect((await getJson(`${base}/api/trajectory?run=big&step=1&index=0`)).status).toBe(404);
  });

  it('serves the page with its CSP and the vendored libraries from node_modules', async () => {
    const page = await get(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.body).toContain('<script type="importmap">');
    expect(page.headers['content-security-policy']).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/);
    for (const f of ['/app.js', '/style.css', '/vendor/preact.mjs', '/vendor/preact-hooks.mjs', '/vendor/htm.mjs', '/vendor/uPlot.esm.js', '/vendor/uPlot.min.css']) {
      const r = await get(base + f);
      expect(r.status, f).toBe(200);
      expect(r.body.length, f).toBeGreaterThan(500);
    }
    expect((await get(`${base}/vendor/htm.mjs`)).body).toMatch(/export/);
  });

  it('refuses path traversal, unknown runs, bad parameters and foreign Host headers', async () => {
    for (const p of ['/../package.json', '/%2e%2e/package.json', '/vendor/..%2f..%2fpackage.json', '/src/dashboard/server.ts', '/web/app.js']) {
      const r = await get(base + p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toContain('"name": "agentrl"');
    }
    for (const id of ['..', '../..', '/etc', 'done/../truncated', 'done/checkpoint', `${root}/done`]) {
      expect((await getJson(`${base}/api/run?run=${encodeURIComponent(id)}`)).status, id).toBe(404);
    }
    expect((await getJson(`${base}/api/trajectory?run=big&step=../0&index=0`)).status).toBe(400);
    expect((await getJson(`${base}/api/trajectory?run=big&step=0&index=0&tokenLimit=1e9`)).status).toBe(400);
    const rebinding = await get(`${base}/api/runs`, { Host: 'evil.example:8050' });
    expect(rebinding.status).toBe(403);
    expect((await get(`${base}/api/runs`, { Host: `localhost:${d.port}` })).status).toBe(200);
  });
});

describe('dashboard token', () => {
  it('binding off loopback requires a token', async () => {
    await expect(startDashboard({ runsDir: tmp(), host: '0.0.0.0' })).rejects.toThrow(/--host 0\.0\.0\.0 serves other machines.*--token/);
  });

  it('with a token: 401 without it; ?token= once sets a cookie; cookie or Bearer header let requests in', async () => {
    const root = tmp();
    writeRun(join(root, 'a'), { steps: 1, lines: [metric(0) + '\n'] });
    const token = 'secret-token-123';
    const d = await startDashboard({ runsDir: root, host: '0.0.0.0', token });
    try {
      const base = `http://127.0.0.1:${d.port}`;
      expect(d.url).toBe(`http://127.0.0.1:${d.port}/?token=${token}`);
      expect((await get(`${base}/`)).status).toBe(401);
      expect((await get(`${base}/api/runs`)).status).toBe(401);
      expect((await get(`${base}/api/runs?token=wrong-token-1234`)).status).toBe(401);
      expect((await get(`${base}/api/runs`, { Authorization: 'Bearer secret-token-12' })).status).toBe(401);
      const first = await get(`${base}/?token=${token}`);
      expect(first.status).toBe(302);
      expect(first.headers.location).toBe('/');
      const cookie = String(first.headers['set-cookie']).split(';')[0]!;
      expect(first.headers['set-cookie']!.toString()).toMatch(/HttpOnly; SameSite=Strict/);
      expect((await get(`${base}/`, { Cookie: cookie })).status).toBe(200);
      const runs = await getJson(`${base}/api/runs`, { Cookie: cookie });
      expect(runs.json.runs.map((r: { id: string }) => r.id)).toEqual(['a']);
      expect((await get(`${base}/api/runs`, { Authorization: `Bearer ${token}` })).status).toBe(200);
      // Off loopback the Host header is whatever name the machine is reached by.
      expect((await get(`${base}/api/runs`, { Authorization: `Bearer ${token}`, Host: 'gpu-box.lan:8050' })).status).toBe(200);
    } finally {
      await d.close();
    }
    expect(existsSync(root)).toBe(true);
  });
});
