/**
 * A population run in the dashboard, in a real browser (Debian's chromium driven by playwright-core,
 * as test/dashboard-e2e.test.ts does): its curves are drawn against the round with one series per
 * member (hyperparameters included), gain a round while the page stays open (the server's
 * incremental update merged by the page: the legend reads round 4's values), and its tables show
 * opponent × member. A normal run beside it keeps its step curves and table.
 *
 * Screenshots go to test-artifacts/dashboard-pop/. With AGENTRL_DASHBOARD_POP_RUN=DIR a real run
 * directory is opened too, for a screenshot only.
 */
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { startDashboard, type Dashboard } from '../src/dashboard/server.ts';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURE = 'test/fixtures/dashboard-pop/pop';
const ARTIFACTS = 'test-artifacts/dashboard-pop';

/** The fixture's cut-off line completed, and m1's line of round 4 (as test/dashboard-population.test.ts writes them). */
const line = (round: number, member: string, lr: number, opponents: Record<string, { trials: number; score: number }>, episodeReward: number[], winRate: number[], o: Record<string, number>) => JSON.stringify({
  round, member, hyper: { lr, entropyCoef: 0.3, gammaTrial: 0.6 }, opponents, step: 0, version: 3, seconds: o.seconds, samplesPerSecond: o.sps, maxStaleness: 0, staleness: { 0: 4 },
  meanReward: episodeReward.reduce((a, b) => a + b, 0) / episodeReward.length, episodeReward, winRate,
  trainedTokens: o.trained, processedTokens: o.trained! * 8, loss: o.loss, clipFrac: o.clip, clipFracMax: o.clip, entropy: o.entropy, kl: o.kl,
});
const R4M0 = line(4, 'm0', 0.001, { aggr: { trials: 4, score: 3 }, cons: { trials: 4, score: 1 } }, [0.5, 1], [0.75, 1], { loss: -0.01, kl: 0.02, entropy: 0.38, clip: 0, sps: 130, seconds: 2, trained: 420 });
const R4M1 = line(4, 'm1', 0.0012, { aggr: { trials: 8, score: 2 } }, [-1, 0], [0, 0.5], { loss: -0.03, kl: 0.04, entropy: 0.41, clip: 0.1, sps: 170, seconds: 4, trained: 520 });

const poll = <T>(fn: () => Promise<T>) => expect.poll(fn, { timeout: 10_000, interval: 100 });
const chartPoints = (page: Page, key: string) => page.getByTestId(`chart-${key}`).getAttribute('data-points').then(Number);
/** A chart's legend labels (the x series first). */
const labels = (page: Page, key: string) => page.getByTestId(`chart-${key}`).locator('.u-legend .u-series .u-label').allTextContents();
/** A chart's legend values with the cursor at the plot's right edge (the last round; the x series first). */
async function valuesAtEnd(page: Page, key: string): Promise<string[]> {
  const over = page.getByTestId(`chart-${key}`).locator('.u-over');
  await over.scrollIntoViewIfNeeded();
  const box = (await over.boundingBox())!;
  await page.mouse.move(box.x + box.width - 1, box.y + box.height / 2);
  return page.getByTestId(`chart-${key}`).locator('.u-legend .u-series .u-value').allTextContents();
}

describe('population run in a browser', () => {
  let browser: Browser | null = null;
  const dashes: Dashboard[] = [];
  afterAll(async () => {
    await browser?.close();
    for (const d of dashes) await d.close();
  });

  it('per-member curves over rounds, updated live; opponent × member tables; a normal run unchanged', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the dashboard's browser test needs Debian's chromium (apt-get install chromium)`);
    const root = mkdtempSync(join(tmpdir(), 'agentrl-dashboard-pop-e2e-'));
    cpSync(FIXTURE, join(root, 'pop'), { recursive: true });
    mkdirSync(join(root, 'single'));
    writeFileSync(join(root, 'single', 'config.json'), JSON.stringify({ name: 'single', task: 'kuhn', trainer: { steps: 50 } }));
    const step = (s: number) => JSON.stringify({ step: s, version: s, meanReward: s / 10, loss: 0.3, episodeReward: [0, s / 10], winRate: [0.5, 0.6], byOpponent: { a: { episodeReward: [0, 1], winRate: [0.5, 1] } } });
    writeFileSync(join(root, 'single', 'metrics.jsonl'), [0, 1, 2, 3, 4].map((s) => step(s) + '\n').join(''));
    const dash = await startDashboard({ runsDir: root });
    dashes.push(dash);
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, locale: 'en-US' });
    page.setDefaultTimeout(10_000);
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });

    await page.goto(`${dash.url}#run=pop&tab=curves`);
    await page.getByTestId('chart-reward').waitFor();
    await poll(() => page.getByTestId('metrics-count').textContent()).toBe('3 rounds · 2 members');
    for (const key of ['reward', 'final', 'winrate', 'hyper-lr', 'hyper-entropyCoef', 'hyper-gammaTrial', 'loss', 'kl', 'clip', 'samples', 'tokens']) {
      expect(await chartPoints(page, key), key).toBe(3);
      expect(await page.getByTestId(`chart-${key}`).locator('h3').textContent(), key).not.toContain('(no data)');
    }
    // The x series is the round (uPlot draws the axis title on the canvas; the legend names it).
    // Polled: the page sets data-points when it renders, and builds the uPlot (its legend) in an effect after.
    await poll(() => labels(page, 'reward')).toEqual(['round', 'm0', 'm1']);
    await poll(() => labels(page, 'kl')).toEqual(['round', 'm0 entropy', 'm0 kl', 'm1 entropy', 'm1 kl']);
    await poll(() => page.locator('.run-head').textContent()).toContain('3 / 4 rounds');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'curves.png'), fullPage: true });

    // Round 4 lands while the page is open: the cut-off line completed, then m1's line.
    const metrics = join(root, 'pop', 'metrics.jsonl');
    const text = readFileSync(metrics, 'utf8');
    appendFileSync(metrics, R4M0.slice(text.length - text.lastIndexOf('\n') - 1) + '\n');
    await poll(() => chartPoints(page, 'reward')).toBe(4);
    await poll(() => page.getByTestId('metrics-count').textContent()).toBe('4 rounds · 2 members');
    // The legend at round 4: m0 (0.5+1)/2; m1 has no line yet.
    await poll(() => valuesAtEnd(page, 'reward')).toEqual(['4', '0.75', '']);
    appendFileSync(metrics, R4M1 + '\n');
    // Round 4 again, now whole (merged into what the page held): m1 (−1+0)/2; lr 0.001 and 0.0012; aggr 5 of 12.
    await poll(() => valuesAtEnd(page, 'reward')).toEqual(['4', '0.75', expect.stringMatching(/^[-−]0\.5$/)]);
    await poll(() => valuesAtEnd(page, 'hyper-lr')).toEqual(['4', '0.001', '0.0012']);
    await poll(() => valuesAtEnd(page, 'winrate')).toEqual(['4', '0.4167', '0.25']);

    await page.getByTestId('tab-tables').click();
    const opp = page.getByTestId('population-opponent-table');
    await poll(() => opp.locator('tbody tr').count()).toBe(2);
    expect(await opp.locator('thead th').allTextContents()).toEqual(['opponent', 'm0', 'm1', 'all members']);
    // aggr over rounds 1–4: m0 1+2+4+3 of 16, m1 0+3+1+2 of 20, together 16 of 36.
    expect(await opp.locator('tbody tr').first().locator('td').allTextContents()).toEqual(['aggr', '0.625 (16)', '0.300 (20)', '0.444 (36)']);
    await poll(() => page.getByTestId('population-episode-table').locator('tbody tr').count()).toBe(2);
    await page.screenshot({ path: join(ARTIFACTS, 'tables.png'), fullPage: true });

    // A normal run: step curves and the per-opponent table, as before.
    await page.goto(`${dash.url}#run=single&tab=curves`);
    await poll(() => chartPoints(page, 'reward')).toBe(5);
    await poll(() => page.getByTestId('metrics-count').textContent()).toBe('5 steps');
    await poll(async () => (await labels(page, 'reward'))[0]).toBe('step');
    await page.getByTestId('tab-tables').click();
    await poll(() => page.getByTestId('training-table').locator('tbody tr').count()).toBe(1);

    const real = process.env.AGENTRL_DASHBOARD_POP_RUN;
    if (real) {
      const d2 = await startDashboard({ runsDir: dirname(real) });
      dashes.push(d2);
      await page.goto(`${d2.url}#run=${encodeURIComponent(basename(real))}&tab=curves`);
      await poll(() => chartPoints(page, 'reward')).toBeGreaterThan(3);
      await page.screenshot({ path: join(ARTIFACTS, 'real-curves.png'), fullPage: true });
      await page.getByTestId('tab-tables').click();
      await page.getByTestId('population-opponent-table').waitFor();
      await page.screenshot({ path: join(ARTIFACTS, 'real-tables.png'), fullPage: true });
    }
    // The static placeholder is gone once the app has rendered (Preact 11 appends to the container).
    expect(await page.getByText('Loading agentrl dashboard').count()).toBe(0);
    expect(pageErrors).toEqual([]);
  }, 90_000);
});
