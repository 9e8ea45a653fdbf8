/**
 * A run directory's figure (src/eval/run-plots.ts): which panels a run's metrics give (missing
 * groups skipped), their values computed by hand from a small metrics.jsonl, a population run's
 * per-opponent win rate, the truncated-last-line rule, and the files: plot.svg, and plot.png
 * rendered by resvg — a real PNG (signature, chunk CRCs, IHDR size, decoded pixels) that is not
 * blank and whose title text was drawn (system fonts found). `agentrl plot` is run as a user runs it.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { figureSvg, histogramMean, movingMean, readMetricsRows, runPanels, svgToPng, writeRunPlots, type MetricsRow } from '../src/eval/run-plots.ts';
import { svgDocument } from '../src/eval/plot.ts';
import { decodePng, inkPixels, PNG_SIGNATURE } from './fixtures/plots/png.ts';
import { tempDirs } from './helpers/temp-dirs.ts';

const ROOT = join(import.meta.dirname, '..');
const tmp = tempDirs('agentrl-plots-');

/** Step i of a 3-episode trial run, every value chosen so the panels' numbers are easy to check. */
function row(i: number): MetricsRow {
  return {
    step: i, version: i, seconds: 2, samples: 20, samplesPerSecond: 100 + i, meanReward: i / 10,
    episodeReward: [0.1 * i, 0.2, 0.3], winRate: [0, 0.5, 1],
    staleness: { 0: 1, 2: 1 }, maxStaleness: 2, tokenStaleness: { 1: 4 },
    trainedTokens: 100, processedTokens: 1000, loss: -0.01 * i, gradNorm: 0.5,
    clipFrac: 0.1, clipFracMax: 0.2, entropy: 0.3, kl: 0, generationOccupancy: null,
  };
}

function writeRun(rows: MetricsRow[], extra = ''): string {
  const d = tmp();
  writeFileSync(join(d, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r) + '\n').join('') + extra);
  writeFileSync(join(d, 'config.json'), JSON.stringify({ name: 'fixture-run', task: 'kuhn' }));
  return d;
}

const series = (panels: ReturnType<typeof runPanels>, title: string) => panels.find((p) => p.title.startsWith(title))!.series;

describe('runPanels', () => {
  it('a trial run: one panel per metric group, values as computed by hand', () => {
    const rows = [0, 1, 2, 3, 4].map(row);
    const panels = runPanels({ rows });
    expect(panels.map((p) => p.title)).toEqual(['reward', 'training win rate by episode', 'policy loss', 'KL and entropy', 'clip fraction', 'staleness', 'samples per second', 'tokens per second']);
    // 5 steps: no smoothing (window 1), so the reward line is the raw mean reward.
    const reward = series(panels, 'reward');
    expect(reward.map((s) => s.name)).toEqual(['reward', 'episode 0', 'episode 1', 'final episode (2)']);
    expect(reward[0]!.values).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    expect(reward[0]!.x).toEqual([0, 1, 2, 3, 4]);
    expect(reward[3]!.values).toEqual([0.3, 0.3, 0.3, 0.3, 0.3]);
    expect(series(panels, 'training win rate').map((s) => s.values[0])).toEqual([0, 0.5, 1]);
    // Staleness {0: 1, 2: 1} has mean 1; tokens {1: 4} mean 1; max 2.
    expect(series(panels, 'staleness').map((s) => [s.name, s.values[0]])).toEqual([['groups, mean', 1], ['groups, max', 2], ['tokens, mean', 1]]);
    // 1000 processed and 100 trained tokens in 2 s.
    expect(series(panels, 'tokens per second').map((s) => s.values[4])).toEqual([500, 50]);
    expect(series(panels, 'samples per second')[0]!.values).toEqual([100, 101, 102, 103, 104]);
    expect(series(panels, 'clip fraction').map((s) => s.values[0])).toEqual([0.1, 0.2]);
  });

  it('long runs are smoothed over a trailing window (10 steps at most), and the raw line kept faintly', () => {
    const rows = Array.from({ length: 40 }, (_, i) => row(i));
    const reward = series(runPanels({ rows }), 'reward');
    // 40 steps → window 4: the mean of steps 0..3 at step 3 is (0 + 0.1 + 0.2 + 0.3) / 4.
    expect(reward[1]!.name).toBe('reward (4-step avg)');
    expect(reward[1]!.values[3]).toBeCloseTo(0.15, 12);
    expect(reward[0]!.noLegend).toBe(true);
    expect(reward[0]!.values[3]).toBeCloseTo(0.3, 12);
    expect(movingMean([1, Number.NaN, 3, 5], 2)).toEqual([1, 1, 3, 4]);
    expect(histogramMean({ 0: 3, 4: 1 })).toBe(1);
    expect(histogramMean(undefined)).toBeNaN();
  });

  it('a trial run with opponents: the final episode\'s win rate per opponent from byOpponent (no-opponent trajectories left out)', () => {
    const rows = [0, 1, 2].map((i) => ({
      ...row(i),
      byOpponent: {
        '': { trajectories: 1, meanReward: 0, episodeReward: [0], winRate: [0] },
        cfr: { trajectories: 4, meanReward: 0.1, episodeReward: [0, 0], winRate: [0.25, 0.5 + i / 10] },
        random: { trajectories: 4, meanReward: 0.5, episodeReward: [1] , winRate: [0.75] },
      },
    }));
    const panels = runPanels({ rows });
    expect(panels[1]!.title).toBe('win rate per opponent, final episode');
    expect(panels[1]!.series.map((s) => [s.name, s.values])).toEqual([['cfr', [0.5, 0.6, 0.7]], ['random', [0.75, 0.75, 0.75]]]);
    expect(panels.some((p) => p.title.startsWith('training win rate by episode'))).toBe(false);
    // Only the no-opponent key: the per-episode panel instead.
    const bandit = runPanels({ rows: [0, 1].map((i) => ({ ...row(i), byOpponent: { '': { winRate: [0, 1, 1] } } })) });
    expect(bandit.map((p) => p.title)).toContain('training win rate by episode');
  });

  it('missing metrics are skipped: a run that records only reward and loss gets two panels', () => {
    const panels = runPanels({ rows: [{ meanReward: 1, loss: 0.5 }, { meanReward: 2, loss: 0.25 }] });
    expect(panels.map((p) => p.title)).toEqual(['reward', 'policy loss']);
    expect(runPanels({ rows: [{ kl: null, entropy: 'x' }] })).toEqual([]);
  });

  it('a population run: one line per member over rounds, win rate per opponent summed over members (draw = ½)', () => {
    const rows: MetricsRow[] = [
      { round: 1, member: 'm0', meanReward: -0.25, loss: 1, opponents: { conservative: { trials: 16, score: 6 } } },
      { round: 1, member: 'm1', meanReward: 1, loss: 2, opponents: { intermediate: { trials: 8, score: 8 }, conservative: { trials: 8, score: 8 } } },
      { round: 2, member: 'm0', meanReward: -0.875, loss: 3, opponents: { aggressive: { trials: 8, score: 2 } } },
      { round: 2, member: 'm1', meanReward: 0.5, loss: 4, opponents: { aggressive: { trials: 16, score: 9 } } },
    ];
    const panels = runPanels({ rows });
    expect(panels.map((p) => p.title)).toEqual(['reward', 'win rate per opponent (draw = ½)', 'policy loss']);
    expect(panels.every((p) => p.xLabel === 'round')).toBe(true);
    const win = series(panels, 'win rate');
    expect(win.map((s) => s.name)).toEqual(['conservative', 'intermediate', 'aggressive']);
    expect(win[0]!.values).toEqual([14 / 24, Number.NaN]);
    expect(win[1]!.values).toEqual([1, Number.NaN]);
    expect(win[2]!.values).toEqual([Number.NaN, 11 / 24]);
    const reward = series(panels, 'reward');
    expect(reward.map((s) => [s.name, s.x, s.values])).toEqual([['m0: reward', [1, 2], [-0.25, -0.875]], ['m1: reward', [1, 2], [1, 0.5]]]);
  });

  it('eval.json adds the held-out win rate per opponent of the trained policy (not the untrained or random one)', () => {
    const ep = (w: number[]) => w.map((winRate) => ({ winRate, meanReturn: winRate }));
    const panels = runPanels({
      rows: [row(0)],
      evalReports: [
        { policy: 'untrained', opponents: [{ opponent: 'random', episodes: ep([0.1, 0.1]) }] },
        { policy: 'meta-rl', opponents: [{ opponent: 'random', episodes: ep([0.4, 0.6]) }, { opponent: 'cfr', episodes: ep([0.2, 0.3]) }] },
        { policy: 'random', opponents: [{ opponent: 'random', episodes: ep([0.5, 0.5]) }] },
      ],
    });
    const last = panels.at(-1)!;
    expect(last.title).toBe('evaluation: win rate per opponent (meta-rl)');
    expect(last.series.map((s) => [s.name, s.values])).toEqual([['random', [0.4, 0.6]], ['cfr', [0.2, 0.3]]]);
  });
});

describe('readMetricsRows', () => {
  it('skips a truncated last line with a warning and refuses a bad line before it', () => {
    const d = writeRun([row(0), row(1)], '{"step":2,"version":2,"seco');
    const warnings: string[] = [];
    const rows = readMetricsRows(join(d, 'metrics.jsonl'), (m) => warnings.push(m));
    expect(rows.map((r) => r.step)).toEqual([0, 1]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/skipping the last line \(3\), which is incomplete/);
    const bad = writeRun([row(0)], 'not json\n' + JSON.stringify(row(2)) + '\n');
    expect(() => readMetricsRows(join(bad, 'metrics.jsonl'), () => {})).toThrow(/metrics\.jsonl: line 2 is not a JSON object/);
  });
});

describe('plot.svg and plot.png', () => {
  it('writes both; the PNG decodes at twice the SVG size, is not blank, and its title text was drawn', () => {
    const d = writeRun([0, 1, 2, 3, 4, 5].map(row));
    const files = writeRunPlots(d);
    expect(files).toEqual([join(d, 'plot.svg'), join(d, 'plot.png')]);
    const svg = readFileSync(join(d, 'plot.svg'), 'utf8');
    const [, w, h] = svg.match(/<svg[^>]*width="(\d+)" height="(\d+)"/)!.map(Number);
    // 8 panels, two per row, 560 × 300 each, under a 40 px title.
    expect([w, h]).toEqual([1120, 40 + 4 * 300]);
    expect(svg).toContain('fixture-run: 6 steps');
    for (const t of ['reward', 'policy loss', 'KL and entropy', 'clip fraction', 'staleness', 'samples per second', 'tokens per second']) expect(svg).toContain(`>${t}</text>`);
    const png = readFileSync(join(d, 'plot.png'));
    expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    const img = decodePng(png);
    expect([img.width, img.height]).toEqual([2 * w!, 2 * h!]);
    const ink = inkPixels(img);
    expect(ink).toBeGreaterThan(10_000);
    expect(ink).toBeLessThan(img.width * img.height * 0.5);
    // The figure title is the only thing in the top 40 px (80 px in the PNG): text was rendered.
    expect(inkPixels(img, { x0: 0, y0: 0, x1: img.width, y1: 70 })).toBeGreaterThan(300);
  });

  it('text alone renders (a font was found for the SVG font families)', () => {
    const svg = svgDocument(200, 40, ['<text x="10" y="28" font-size="20">agentrl 0.5</text>']);
    const img = decodePng(svgToPng(svg, 1));
    expect([img.width, img.height]).toEqual([200, 40]);
    expect(inkPixels(img)).toBeGreaterThan(100);
    // An empty document is white: the ink above is the text.
    expect(inkPixels(decodePng(svgToPng(svgDocument(200, 40, []), 1)))).toBe(0);
  });

  it('an empty metrics.jsonl writes nothing; a missing one names the file', () => {
    const d = writeRun([]);
    expect(writeRunPlots(d)).toEqual([]);
    expect(existsSync(join(d, 'plot.svg'))).toBe(false);
    expect(() => writeRunPlots(join(d, 'nope'))).toThrow(/nope\/metrics\.jsonl does not exist/);
    expect(figureSvg('t', [])).toMatch(/^<svg/);
  });
});

describe('agentrl plot', () => {
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'agentrl.mjs'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr };
  };

  it('writes the figure, TensorBoard events and CSV to --out; a bad --format is refused with the valid list', () => {
    const d = writeRun([0, 1, 2].map(row), '{"step":3');
    const out = join(tmp(), 'figs');
    mkdirSync(out);
    const r = cli(['plot', d, '--out', out, '--format', 'svg,png,tensorboard,csv']);
    expect(r.code, r.out).toBe(0);
    // One warning (on stderr), not one per format.
    expect(r.stderr.match(/skipping the last line \(4\)/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/^wrote .*plot\.svg, .*plot\.png, .*events\.out\.tfevents\..*, .*metrics\.csv$/m);
    for (const f of ['plot.svg', 'plot.png', 'metrics.csv']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(readdirSync(join(out, 'tb')).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    expect(readFileSync(join(out, 'metrics.csv'), 'utf8').split('\n').filter(Boolean)).toHaveLength(4);
    const bad = cli(['plot', d, '--format', 'svg,gif']);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/unknown format 'gif'; use a comma-separated list of svg, png, tensorboard, csv/);
  }, 60_000);
});
