/**
 * The dashboard end to end, in a real browser (Debian's chromium driven by playwright-core; never a
 * downloaded browser build): a Kuhn poker run trains while the page is open — `agentrl train` itself,
 * in a child process, logging trajectories at every step (--set log.trajectories.every=1) and
 * per-opponent numbers in metrics.jsonl; the reward curve gains points as steps land; a logged
 * trajectory opens and a model token's behaviour logprob and policy version read from the page equal
 * those in the run's trajectory file. A damaged run (truncated metrics line, no checkpoint, a huge
 * trajectory) still renders and shows its problems.
 *
 * Screenshots go to test-artifacts/dashboard/; with AGENTRL_WRITE_SCREENSHOTS=1 the README's two
 * (docs/images/dashboard.png, docs/images/trajectory.png) are written too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenSource, type Trajectory } from '../src/core/types.ts';
import { startDashboard, type Dashboard } from '../src/dashboard/server.ts';
import { createTrajectoryLog, type LoggedTrajectory } from '../src/run/trajectory-log.ts';

const CHROMIUM = '/usr/bin/chromium';
/** Kuhn poker meta-RL against three opponents, a tiny model, thousands of steps. */
const LIVE_CONFIG = 'test/fixtures/dashboard/kuhn-live.yaml';
const ARTIFACTS = 'test-artifacts/dashboard';
const WRITE_DOCS = process.env.AGENTRL_WRITE_SCREENSHOTS === '1';

function lineCount(path: string): number {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0;
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Playwright's own matchers are @playwright/test's: here vitest polls the page. */
const poll = <T>(fn: () => Promise<T>) => expect.poll(fn, { timeout: 10_000, interval: 100 });

const chartPoints = (page: Page, key: string) => page.getByTestId(`chart-${key}`).getAttribute('data-points').then(Number);

async function shoot(page: Page, name: string, docsName?: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: false });
  if (WRITE_DOCS && docsName) {
    mkdirSync('docs/images', { recursive: true });
    copyFileSync(path, join('docs/images', docsName));
  }
}

/** A run that stopped mid-write: a truncated last metrics line, no checkpoint, one huge trajectory. */
function damagedRun(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ name: 'damaged', task: 'search', trainer: { steps: 50 }, checkpointEvery: 2 }));
  const line = (s: number) => JSON.stringify({ step: s, version: s, meanReward: 0.1 * s, loss: 0.3, episodeReward: [], winRate: [] });
  writeFileSync(join(dir, 'metrics.jsonl'), `${line(0)}\n${line(1)}\n${line(2)}\n${line(3).slice(0, 20)}`);
  const n = 50_000;
  const t: Trajectory = {
    id: 'huge', groupId: 'g0', reward: 1, opponent: '', info: { question: 'a very long search session' },
    samples: [{
      seq: {
        ids: Array.from({ length: n }, (_, i) => i % 97),
        logprobs: Array.from({ length: n }, (_, i) => (i % 3 === 1 ? -0.01 * (i % 50) : 0)),
        versions: Array.from({ length: n }, (_, i) => (i % 3 === 1 ? 2 : -1)),
        mask: Array.from({ length: n }, (_, i) => (i % 3 === 1 ? 1 : 0)),
        source: Array.from({ length: n }, (_, i) => (i % 3 === 1 ? TokenSource.model : i % 3 === 2 ? TokenSource.tool : TokenSource.prompt)),
      },
      reward: 1, ret: 1, advantage: 0.75, keys: {},
    }],
  };
  createTrajectoryLog(dir, { every: 1, perStep: 1 }).record(2, [t], (ids) => ids.map((id) => `w${id}`), { trainerVersion: 3 });
  // It stopped an hour ago.
  const then = new Date(Date.now() - 3600_000);
  for (const f of ['config.json', 'metrics.jsonl', 'trajectories']) utimesSync(join(dir, f), then, then);
}

describe('dashboard in a browser', () => {
  let child: ChildProcess | null = null;
  let browser: Browser | null = null;
  let launching: Promise<Browser> | null = null;
  let dash: Dashboard | null = null;
  afterAll(async () => {
    child?.kill('SIGKILL');
    await launching?.catch(() => null);
    await browser?.close();
    await dash?.close();
  });

  it('follows a training run live, opens a trajectory and reads a token\'s logprob and version; a damaged run still renders', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the dashboard's browser test needs Debian's chromium (apt-get install chromium); .ci/run installs it`);
    const root = mkdtempSync(join(tmpdir(), 'agentrl-dashboard-e2e-'));
    const live = join(root, 'kuhn-live');
    damagedRun(join(root, 'damaged'));
    // The CLI as a user runs it; the config has far more steps than the test waits for, so the run is
    // still training throughout (it is killed at the end).
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', LIVE_CONFIG, '--out', live, '--set', 'log.trajectories.every=1'], {
      env: { ...process.env, AGENTRL_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    // The browser starts while the run does (both take seconds on a busy machine).
    launching = chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    launching.then((b) => (browser = b), () => {}); // awaited below, where a failure is reported
    const metrics = join(live, 'metrics.jsonl');
    await until('the first two training steps', () => {
      if (child!.exitCode !== null) throw new Error(`the training run exited early (${child!.exitCode}): ${stderr}`);
      return lineCount(metrics) >= 2;
    }, 30_000);

    dash = await startDashboard({ runsDir: root });
    browser = await launching;
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(10_000);
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

    await page.goto(`${dash.url}#run=kuhn-live&tab=curves`);
    await expect.poll(() => page.getByTestId('run-status').textContent(), { timeout: 10_000 }).toBe('training');
    await page.getByTestId('chart-reward').waitFor();
    const before = await chartPoints(page, 'reward');
    expect(before).toBeGreaterThanOrEqual(2);
    // The curve gains points while the page stays open (polling, no reload).
    await expect.poll(() => chartPoints(page, 'reward'), { timeout: 15_000, interval: 250 }).toBeGreaterThanOrEqual(before + 2);
    for (const key of ['winrate', 'loss', 'kl', 'clip', 'staleness', 'samples', 'tokens']) expect(await chartPoints(page, key), key).toBeGreaterThan(before);
    // One win-rate series per opponent (from byOpponent).
    // Polled: a new series rebuilds the plot (its legend) in an effect after the render.
    await expect.poll(() => page.getByTestId('chart-winrate').locator('.u-legend .u-series').allTextContents(), { timeout: 10_000 }).toEqual(
      expect.arrayContaining([expect.stringContaining('aggressive'), expect.stringContaining('conservative'), expect.stringContaining('intermediate')]),
    );
    if (WRITE_DOCS) await expect.poll(() => chartPoints(page, 'reward'), { timeout: 20_000 }).toBeGreaterThanOrEqual(12);
    await shoot(page, 'dashboard.png', 'dashboard.png');

    await page.getByTestId('tab-tables').click();
    await poll(() => page.getByTestId('training-table').locator('tbody tr').count()).toBe(3);

    // A trajectory of step 1 (logged at every step: log.trajectories.every=1).
    await page.getByTestId('tab-trajectories').click();
    const row = page.locator('[data-testid="trajectory-row"][data-step="1"]').first();
    await row.waitFor({ timeout: 10_000 });
    const index = Number(await row.getAttribute('data-index'));
    await row.click();
    const viewer = page.getByTestId('trajectory-viewer');
    await viewer.getByTestId('token').first().waitFor();

    // The first sampled token with a nonzero logprob, as the trajectory file records it.
    const logged = JSON.parse(readFileSync(join(live, 'trajectories', 'step-000001.jsonl'), 'utf8').split('\n')[index]!) as LoggedTrajectory;
    let want: { sample: number; pos: number; logprob: number; version: number; id: number; text: string } | null = null;
    for (let s = 0; s < logged.samples.length && !want; s++) {
      const k = logged.samples[s]!.tokens;
      const pos = k.source.findIndex((src, i) => src === TokenSource.model && k.logprobs[i] !== 0);
      if (pos >= 0) want = { sample: s, pos, logprob: k.logprobs[pos]!, version: k.versions[pos]!, id: k.ids[pos]!, text: k.text[pos]! };
    }
    expect(want, 'a model token with a nonzero logprob in the logged trajectory').not.toBeNull();
    const chip = viewer.locator(`[data-testid="sample"][data-sample="${want!.sample}"] [data-testid="token"][data-pos="${want!.pos}"]`);
    await poll(() => chip.getAttribute('data-source')).toBe('model');
    await chip.hover();
    const inspector = page.getByTestId('token-inspector');
    await poll(() => inspector.getByTestId('tok-logprob').textContent()).toBe(String(want!.logprob));
    expect(Number(await inspector.getByTestId('tok-logprob').textContent())).toBe(want!.logprob);
    expect(Number(await inspector.getByTestId('tok-version').textContent())).toBe(want!.version);
    await poll(() => inspector.getByTestId('tok-id').textContent()).toBe(String(want!.id));
    await poll(() => inspector.getByTestId('tok-text').textContent()).toBe(JSON.stringify(want!.text));
    await poll(() => inspector.getByTestId('tok-mask').textContent()).toBe('1');
    await poll(() => inspector.getByTestId('tok-staleness').textContent()).toBe(String(logged.trainerVersion! - want!.version));
    // The sample's return and advantage as credited by the trainer.
    const sample = viewer.locator(`[data-testid="sample"][data-sample="${want!.sample}"]`);
    expect(Number(await sample.getByTestId('sample-return').textContent())).toBeCloseTo(logged.samples[want!.sample]!.ret!, 4);
    expect(Number(await sample.getByTestId('sample-advantage').textContent())).toBeCloseTo(logged.samples[want!.sample]!.advantage as number, 4);
    await chip.click();
    await poll(() => inspector.getAttribute('data-pinned')).toBe('1');
    await page.getByTestId('mode-logprob').check();
    await shoot(page, 'trajectory.png');
    if (WRITE_DOCS) {
      await viewer.scrollIntoViewIfNeeded();
      await viewer.screenshot({ path: join(ARTIFACTS, 'trajectory-viewer.png') });
      mkdirSync('docs/images', { recursive: true });
      copyFileSync(join(ARTIFACTS, 'trajectory-viewer.png'), 'docs/images/trajectory.png');
    }
    expect(child.exitCode, 'the run is still training at the end of the test').toBeNull();
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGKILL');
    await exited;

    // The damaged run renders, and says what is wrong with it.
    await page.goto(`${dash.url}#run=damaged&tab=trajectories`);
    const warnings = page.getByTestId('warnings');
    await poll(() => warnings.textContent()).toContain('metrics.jsonl');
    await poll(() => warnings.textContent()).toContain('the last line is incomplete');
    await poll(() => warnings.textContent()).toContain('checkpoint/');
    await poll(() => warnings.textContent()).toContain('the run stopped');
    await poll(() => page.getByTestId('run-status').textContent()).toBe('stopped');
    await page.getByTestId('trajectory-row').first().click();
    await poll(() => page.getByTestId('trajectory-notes').textContent()).toContain('large trajectory: 50,000 tokens');
    await poll(() => page.getByTestId('token').count()).toBe(1000);
    await page.getByTestId('more-tokens').click();
    await poll(() => page.getByTestId('token').count()).toBe(2000);
    await page.evaluate('window.scrollTo(0, 0)');
    await shoot(page, 'damaged-run.png');
    await page.getByTestId('tab-curves').click();
    await poll(() => chartPoints(page, 'reward')).toBe(3);

    expect(pageErrors).toEqual([]);
  }, 90_000);
});
