/**
 * The dashboard's view of a population run (src/dashboard/population-series.ts through /api/metrics
 * and /api/runs): curves against the round with one series per member, the hyperparameters per
 * member over rounds, per-opponent win rates summed over members, the last rounds' tables, and the
 * incremental protocol (the client keeps its first `fromIndex` rounds and appends the rest).
 *
 * Fixture test/fixtures/dashboard-pop/pop/metrics.jsonl: members m0 and m1, rounds 1–3, and round 4 of
 * m0 cut off mid-line (a run writing, or killed). m1's hyperparameters change at round 3 (a PBT
 * exploit of m0). Expected values are worked out by hand from the lines (see the comments).
 */
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { populationView, type PopulationView } from '../src/dashboard/population-series.ts';
import { MetricsReader, type MetricsRow } from '../src/dashboard/run-reader.ts';
import { startDashboard, type Dashboard } from '../src/dashboard/server.ts';

const FIXTURE = 'test/fixtures/dashboard-pop/pop';

/** A metrics line as population-run.ts writes it (the fixture's fields, in its key order). */
function popLine(round: number, member: string, hyper: Record<string, number>, opponents: Record<string, [number, number]>, version: number,
  episodeReward: number[], winRate: number[], o: { loss: number; kl: number; entropy: number; clip: number; sps: number; seconds: number; trained: number }): string {
  return JSON.stringify({
    round, member, hyper, opponents: Object.fromEntries(Object.entries(opponents).map(([k, [trials, score]]) => [k, { trials, score }])),
    step: 0, version, seconds: o.seconds, samplesPerSecond: o.sps, maxStaleness: 0, staleness: { 0: 4 },
    meanReward: episodeReward.reduce((a, b) => a + b, 0) / episodeReward.length, episodeReward, winRate,
    trainedTokens: o.trained, processedTokens: o.trained * 8, loss: o.loss, clipFrac: o.clip, clipFracMax: o.clip, entropy: o.entropy, kl: o.kl,
  });
}

const H0 = { lr: 0.001, entropyCoef: 0.3, gammaTrial: 0.6 };
const H1 = { lr: 0.0012, entropyCoef: 0.3, gammaTrial: 0.6 };
/** Round 4: m0's line is the fixture's cut-off one; m1's comes later. */
const R4M0 = popLine(4, 'm0', H0, { aggr: [4, 3], cons: [4, 1] }, 3, [0.5, 1], [0.75, 1], { loss: -0.01, kl: 0.02, entropy: 0.38, clip: 0, sps: 130, seconds: 2, trained: 420 });
const R4M1 = popLine(4, 'm1', H1, { aggr: [8, 2] }, 3, [-1, 0], [0, 0.5], { loss: -0.03, kl: 0.04, entropy: 0.41, clip: 0.1, sps: 170, seconds: 4, trained: 520 });
/** Round 5: m1 meets a snapshot of m0, an opponent not seen before. */
const R5M0 = popLine(5, 'm0', H0, { aggr: [8, 8] }, 4, [1, 1], [1, 1], { loss: 0, kl: 0, entropy: 0.3, clip: 0, sps: 100, seconds: 1, trained: 100 });
const R5M1 = popLine(5, 'm1', H1, { aggr: [4, 2], 'm0@4': [4, 1] }, 4, [0, 0], [0.5, 0.5], { loss: 0, kl: 0, entropy: 0.3, clip: 0, sps: 100, seconds: 1, trained: 100 });
/** Round 5 of m0 again, as a run resumed from its round-4 save logs it: this line wins. */
const R5M0_RESUMED = popLine(5, 'm0', H0, { aggr: [8, 4] }, 4, [0, 0.5], [0.5, 0.5], { loss: 0, kl: 0, entropy: 0.3, clip: 0, sps: 100, seconds: 1, trained: 100 });

/** Numbers compared to 12 digits (score/trials and means are not exact in binary), the rest exactly. */
function approx(x: unknown): unknown {
  if (typeof x === 'number') return Number.isInteger(x) ? x : expect.closeTo(x, 12);
  if (Array.isArray(x)) return x.map(approx);
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, approx(v)]));
  return x;
}

const series = (v: PopulationView, key: string) => v.charts.find((c) => c.key === key)!.series.map((s) => ({ label: s.label, y: s.y }));

/** The page's merge (src/dashboard/web/app.js mergePopulation), restated: the contract fromIndex promises. */
function merge(cur: PopulationView, next: PopulationView): PopulationView {
  if (next.fromIndex === 0) return next;
  const keep = next.fromIndex;
  return {
    ...next, rounds: [...cur.rounds.slice(0, keep), ...next.rounds],
    charts: next.charts.map((c, i) => ({ ...c, series: c.series.map((s, j) => ({ ...s, y: [...cur.charts[i]!.series[j]!.y.slice(0, keep), ...s.y] })) })),
  };
}

function fixtureRows(): MetricsRow[] {
  const s = new MetricsReader(join(FIXTURE, 'metrics.jsonl')).refresh();
  return s!.rows;
}

describe('population series (pure)', () => {
  it('the fixture: six complete lines, the cut-off seventh is the start of round 4 of m0', () => {
    const text = readFileSync(join(FIXTURE, 'metrics.jsonl'), 'utf8');
    const partial = text.slice(text.lastIndexOf('\n') + 1);
    expect(partial.length).toBeGreaterThan(0);
    expect(R4M0.startsWith(partial)).toBe(true);
    const reader = new MetricsReader(join(FIXTURE, 'metrics.jsonl'));
    expect(reader.refresh()!.rows.map((r) => [r.line, r.data.round, r.data.member])).toEqual([[0, 1, 'm0'], [1, 1, 'm1'], [2, 2, 'm0'], [3, 2, 'm1'], [4, 3, 'm0'], [5, 3, 'm1']]);
    expect(reader.warnings()).toEqual([{ file: 'metrics.jsonl', message: `the last line is incomplete (${Buffer.byteLength(partial)} bytes without a newline: truncated, or being written); skipped` }]);
  });

  it('curves against the round, one series per member', () => {
    const v = populationView(fixtureRows())!;
    expect(v).toMatchObject({ xLabel: 'round', members: ['m0', 'm1'], fromIndex: 0, rounds: [1, 2, 3] });
    expect(v.charts.map((c) => c.key)).toEqual(['reward', 'final', 'winrate', 'hyper-lr', 'hyper-entropyCoef', 'hyper-gammaTrial', 'loss', 'kl', 'clip', 'samples', 'tokens']);
    expect(v.charts.find((c) => c.key === 'final')!.title).toBe('Final-episode reward per member (episode 2)');
    // meanReward = the mean of the two episodes: m0 (−0.5+0.25)/2, (0+0.5)/2, (0.25+0.75)/2.
    expect(series(v, 'reward')).toEqual([{ label: 'm0', y: [-0.125, 0.25, 0.5] }, { label: 'm1', y: [-0.5, -0.25, 0.25] }]);
    expect(series(v, 'final')).toEqual([{ label: 'm0', y: [0.25, 0.5, 0.75] }, { label: 'm1', y: [-0.25, 0, 0.5] }]);
    // Summed over members: round 1 aggr (1+0)/(4+2), cons (3+4.5)/(4+6); round 2 (2+3)/10, (4+1)/6; round 3 5/8, 5/8.
    expect(series(v, 'winrate')).toEqual(approx([{ label: 'aggr', y: [1 / 6, 0.5, 0.625] }, { label: 'cons', y: [0.75, 5 / 6, 0.625] }]));
    // PBT: m1 took m0's settings (lr perturbed) before round 3.
    expect(series(v, 'hyper-lr')).toEqual([{ label: 'm0', y: [0.001, 0.001, 0.001] }, { label: 'm1', y: [0.002, 0.002, 0.0012] }]);
    expect(series(v, 'hyper-entropyCoef')).toEqual([{ label: 'm0', y: [0.3, 0.3, 0.3] }, { label: 'm1', y: [0.1, 0.1, 0.3] }]);
    expect(series(v, 'hyper-gammaTrial')).toEqual([{ label: 'm0', y: [0.6, 0.6, 0.6] }, { label: 'm1', y: [0.9, 0.9, 0.6] }]);
    expect(series(v, 'loss')).toEqual([{ label: 'm0', y: [-0.1, -0.05, -0.02] }, { label: 'm1', y: [-0.2, -0.15, -0.04] }]);
    expect(v.charts.find((c) => c.key === 'kl')!.series).toEqual([
      { label: 'm0 entropy', color: 0, y: [0.5, 0.45, 0.4] }, { label: 'm0 kl', color: 0, dash: true, y: [0, 0.02, 0.01] },
      { label: 'm1 entropy', color: 1, y: [0.4, 0.35, 0.42] }, { label: 'm1 kl', color: 1, dash: true, y: [0.01, 0.03, 0.05] },
    ]);
    expect(series(v, 'clip')).toEqual([{ label: 'm0', y: [0, 0.05, 0] }, { label: 'm1', y: [0.1, 0.2, 0.05] }]);
    expect(series(v, 'samples')).toEqual([{ label: 'm0', y: [100, 120, 110] }, { label: 'm1', y: [200, 150, 160] }]);
    // trainedTokens / seconds: 400/2, 500/2, 440/2 and 300/1, 600/4, 480/2.
    expect(series(v, 'tokens')).toEqual([{ label: 'm0', y: [200, 250, 220] }, { label: 'm1', y: [300, 150, 240] }]);
    // A member keeps its colour in every chart.
    expect(v.charts.find((c) => c.key === 'loss')!.series.map((s) => s.color)).toEqual([0, 1]);
  });

  it('the table: the last rounds by member × episode and by opponent × member', () => {
    const v = populationView(fixtureRows())!;
    expect(v.table).toEqual(approx({
      rounds: [1, 2, 3], episodes: 2,
      members: [
        // episode 1: m0 (−0.5+0+0.25)/3, m1 (−0.75−0.5+0)/3; episode 2: (0.25+0.5+0.75)/3, (−0.25+0+0.5)/3.
        { member: 'm0', reward: [-0.25 / 3, 0.5], winRate: [(0.25 + 0.5 + 0.625) / 3, (0.5 + 0.75 + 0.875) / 3] },
        { member: 'm1', reward: [-1.25 / 3, 0.25 / 3], winRate: [(0.125 + 0.25 + 0.5) / 3, (0.375 + 0.5 + 0.75) / 3] },
      ],
      opponents: [
        // aggr: m0 scored 1+2+4 of 12, m1 0+3+1 of 2+6+4.
        { opponent: 'aggr', byMember: [{ trials: 12, score: 7, winRate: 7 / 12 }, { trials: 12, score: 4, winRate: 4 / 12 }], all: { trials: 24, score: 11, winRate: 11 / 24 } },
        { opponent: 'cons', byMember: [{ trials: 12, score: 9, winRate: 0.75 }, { trials: 12, score: 8.5, winRate: 8.5 / 12 }], all: { trials: 24, score: 17.5, winRate: 17.5 / 24 } },
      ],
    }));
  });

  it('the table covers the last 10 rounds only', () => {
    const rows: MetricsRow[] = Array.from({ length: 12 }, (_, i) => ({ line: i, data: { round: i + 1, member: 'm0', episodeReward: [i + 1], opponents: { x: { trials: 1, score: i % 2 } } } }));
    // A snapshot met in round 1 only: a curve, but no row of the table.
    rows[0]!.data.opponents = { x: { trials: 1, score: 0 }, 'm0@0': { trials: 3, score: 1 } };
    const t = populationView(rows)!.table;
    expect(t.rounds).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // Rewards 3…12: mean 7.5; scores i % 2 for i = 2…11: five wins.
    expect(t.members).toEqual([{ member: 'm0', reward: [7.5], winRate: [null] }]);
    expect(t.opponents).toEqual([{ opponent: 'x', byMember: [{ trials: 10, score: 5, winRate: 0.5 }], all: { trials: 10, score: 5, winRate: 0.5 } }]);
    expect(populationView(rows)!.charts.find((c) => c.key === 'winrate')!.series.map((s) => [s.label, s.y[0]])).toEqual([['m0@0', 1 / 3], ['x', 0]]);
  });

  it('a normal run is not a population: no view', () => {
    expect(populationView([{ line: 0, data: { step: 0, meanReward: 1 } }, { line: 1, data: { step: 1, meanReward: 2 } }])).toBeNull();
  });

  it('incremental: whatever prefix a client holds, merging the update into it gives the whole view', () => {
    const text = readFileSync(join(FIXTURE, 'metrics.jsonl'), 'utf8');
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    const rows: MetricsRow[] = [...complete.split('\n').filter(Boolean), R4M0, R4M1, R5M0, R5M1, R5M0_RESUMED].map((t, line) => ({ line, data: JSON.parse(t) as Record<string, unknown> }));
    // The file as it grows (n lines), polled by a client that holds `since` of them.
    for (let n = 1; n <= rows.length; n++) {
      const whole = populationView(rows.slice(0, n))!;
      for (let since = 1; since < n; since++) {
        const merged = merge(populationView(rows.slice(0, since))!, populationView(rows.slice(0, n), since)!);
        expect(merged.rounds, `${since} of ${n} lines`).toEqual(whole.rounds);
        expect(merged.charts, `${since} of ${n} lines`).toEqual(whole.charts);
      }
    }
    // One line per poll: the index of the new line's round, except where the charts' series change —
    // line 1 (member m1 first seen) and line 9 (opponent m0@4) — and line 10 repeats round 5 (a resumed run).
    const froms = Array.from({ length: rows.length - 1 }, (_, i) => populationView(rows.slice(0, i + 2), i + 1)!.fromIndex);
    expect(froms).toEqual([0, 1, 1, 2, 2, 3, 3, 4, 0, 4]);
    const whole = populationView(rows)!;
    // Rounds 1–5, the resumed line of round 5 replacing the first: m0 (0+0.5)/2.
    expect(series(whole, 'reward')[0]).toEqual({ label: 'm0', y: [-0.125, 0.25, 0.5, 0.75, 0.25] });
    expect(series(whole, 'winrate').map((s) => s.label)).toEqual(['aggr', 'cons', 'm0@4']);
    expect(series(whole, 'winrate')[2]!.y).toEqual([null, null, null, null, 0.25]);
    // Round 5 aggr: m0's resumed 4 of 8 and m1's 2 of 4.
    expect(series(whole, 'winrate')[0]!.y[4]).toBeCloseTo(6 / 12, 12);
  });
});

// ── through the server ───────────────────────────────────────────────────────────────────────

function getJson(url: string): Promise<{ status: number; json: Record<string, any> }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(body) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard API for a population run', () => {
  const root = mkdtempSync(join(tmpdir(), 'agentrl-dashboard-pop-'));
  const pop = join(root, 'pop');
  let d: Dashboard;
  let base: string;

  beforeAll(async () => {
    cpSync(FIXTURE, pop, { recursive: true });
    // A normal run beside it: its answers keep their shape (no population view, steps counted by line).
    mkdirSync(join(root, 'single'));
    writeFileSync(join(root, 'single', 'config.json'), JSON.stringify({ name: 's', task: 'kuhn', trainer: { steps: 5 } }));
    writeFileSync(join(root, 'single', 'metrics.jsonl'), [0, 1].map((s) => JSON.stringify({ step: s, version: s, meanReward: s, loss: 0.5 }) + '\n').join(''));
    d = await startDashboard({ runsDir: root });
    base = d.url.replace(/\/$/, '');
  });
  afterAll(() => d.close());

  it('/api/runs counts a population run in rounds (trainer.steps counts rounds)', async () => {
    const { json } = await getJson(`${base}/api/runs`);
    const by = Object.fromEntries((json.runs as { id: string }[]).map((r) => [r.id, r]));
    // Six lines, three rounds: not finished (4 rounds), although 6 lines ≥ 4.
    expect(by.pop).toMatchObject({ name: 'pop-fixture', status: 'training', steps: 3, unit: 'rounds', totalSteps: 4 });
    expect(by.single).toMatchObject({ steps: 2, unit: 'steps', totalSteps: 5 });
  });

  it('a population run\'s resumable state is population/population.json, not checkpoint/', async () => {
    const a = await getJson(`${base}/api/run?run=pop`);
    expect(a.json.hasCheckpoint).toBe(false);
    // checkpointEvery 2, round 3 logged: a save is due.
    expect(a.json.warnings).toContainEqual({ file: 'population/', message: 'missing (no population/population.json after 3 rounds): this run cannot be resumed or evaluated' });
    mkdirSync(join(pop, 'population'));
    writeFileSync(join(pop, 'population', 'population.json'), '{}');
    const b = await getJson(`${base}/api/run?run=pop`);
    expect(b.json.hasCheckpoint).toBe(true);
    expect(b.json.warnings.map((w: { file: string }) => w.file)).toEqual(['metrics.jsonl']);
  });

  it('/api/metrics: the rows as before plus the per-member curves; then only the rounds the new rows touch', async () => {
    const a = await getJson(`${base}/api/metrics?run=pop`);
    expect(a.json).toMatchObject({ from: 0, total: 6 });
    expect(a.json.rows.map((r: MetricsRow) => r.line)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(a.json.warnings).toEqual([{ file: 'metrics.jsonl', message: expect.stringMatching(/^the last line is incomplete/) }]);
    const p = a.json.population as PopulationView;
    expect(p).toMatchObject({ xLabel: 'round', members: ['m0', 'm1'], fromIndex: 0, rounds: [1, 2, 3] });
    expect(series(p, 'reward')).toEqual([{ label: 'm0', y: [-0.125, 0.25, 0.5] }, { label: 'm1', y: [-0.5, -0.25, 0.25] }]);
    expect(series(p, 'hyper-lr')).toEqual([{ label: 'm0', y: [0.001, 0.001, 0.001] }, { label: 'm1', y: [0.002, 0.002, 0.0012] }]);
    expect(p.table.opponents.map((o) => [o.opponent, o.all.trials, o.all.score])).toEqual([['aggr', 24, 11], ['cons', 24, 17.5]]);
    const gen = a.json.generation as number;

    // Nothing new: no rows, no view.
    const idle = await getJson(`${base}/api/metrics?run=pop&since=6&gen=${gen}`);
    expect(idle.json.rows).toEqual([]);
    expect(idle.json.population).toBeUndefined();

    // The cut-off line is completed: round 4 of m0 only (m1 has no line yet: null).
    const text = readFileSync(join(pop, 'metrics.jsonl'), 'utf8');
    appendFileSync(join(pop, 'metrics.jsonl'), R4M0.slice(text.length - text.lastIndexOf('\n') - 1) + '\n');
    const b = await getJson(`${base}/api/metrics?run=pop&since=6&gen=${gen}`);
    expect(b.json).toMatchObject({ generation: gen, from: 6, total: 7, warnings: [] });
    expect(b.json.rows.map((r: MetricsRow) => [r.line, r.data.round, r.data.member])).toEqual([[6, 4, 'm0']]);
    expect(b.json.population).toMatchObject({ fromIndex: 3, rounds: [4] });
    expect(series(b.json.population, 'reward')).toEqual([{ label: 'm0', y: [0.75] }, { label: 'm1', y: [null] }]);
    // Round 4 aggr: m0 alone, 3 of 4.
    expect(series(b.json.population, 'winrate')).toEqual([{ label: 'aggr', y: [0.75] }, { label: 'cons', y: [0.25] }]);

    // m1's line of round 4: the round is sent again, whole.
    appendFileSync(join(pop, 'metrics.jsonl'), R4M1 + '\n');
    const c = await getJson(`${base}/api/metrics?run=pop&since=7&gen=${gen}`);
    expect(c.json.population).toMatchObject({ fromIndex: 3, rounds: [4] });
    expect(series(c.json.population, 'reward')).toEqual([{ label: 'm0', y: [0.75] }, { label: 'm1', y: [-0.5] }]);
    // aggr (3+2)/(4+8); cons m0's 1 of 4 (m1 did not meet cons).
    expect(series(c.json.population, 'winrate')).toEqual(approx([{ label: 'aggr', y: [5 / 12] }, { label: 'cons', y: [0.25] }]));
    expect(series(c.json.population, 'hyper-lr')).toEqual([{ label: 'm0', y: [0.001] }, { label: 'm1', y: [0.0012] }]);
    // trainedTokens / seconds: 420/2 and 520/4.
    expect(series(c.json.population, 'tokens')).toEqual([{ label: 'm0', y: [210] }, { label: 'm1', y: [130] }]);

    // A new opponent (a snapshot of m0) changes the charts' series: the whole view again.
    appendFileSync(join(pop, 'metrics.jsonl'), R5M0 + '\n' + R5M1 + '\n');
    const e = await getJson(`${base}/api/metrics?run=pop&since=8&gen=${gen}`);
    expect(e.json.rows.map((r: MetricsRow) => r.line)).toEqual([8, 9]);
    expect(e.json.population).toMatchObject({ fromIndex: 0, rounds: [1, 2, 3, 4, 5] });
    expect(series(e.json.population, 'winrate')).toEqual(approx([
      { label: 'aggr', y: [1 / 6, 0.5, 0.625, 5 / 12, 10 / 12] },
      { label: 'cons', y: [0.75, 5 / 6, 0.625, 0.25, null] },
      { label: 'm0@4', y: [null, null, null, null, 0.25] },
    ]));
    const runs = await getJson(`${base}/api/runs`);
    expect(runs.json.runs.find((r: { id: string }) => r.id === 'pop')).toMatchObject({ steps: 5, totalSteps: 4, status: 'finished' });

    // A normal run's answer has no population view.
    const s = await getJson(`${base}/api/metrics?run=single`);
    expect(s.json.rows.map((r: MetricsRow) => r.data.meanReward)).toEqual([0, 1]);
    expect(Object.keys(s.json).sort()).toEqual(['from', 'generation', 'rows', 'total', 'warnings']);
  });
});
