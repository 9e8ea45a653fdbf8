/**
 * Evaluation reports survive a trip through eval.json: statistics that were undefined (NaN: no trial
 * reached the episode, or one trial for an se) are written as null, and must come back as NaN, not as
 * a null that arithmetic reads as 0 (a result table once averaged such cells into "0.333").
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfigFile } from '../src/cli/config-file.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { loadFinishedRun } from '../src/run/run.ts';
import { TrialConfigSchema } from '../src/agents/trial.ts';
import { reviveEvalReports, type EvalReport, type EpisodeStats } from '../src/eval/trials.ts';

const ep = (episode: number, n: number, meanReturn: number, seReturn: number): EpisodeStats => ({ episode, n, meanReturn, seReturn, winRate: meanReturn, seWin: seReturn, successRate: 1 });
const report: EvalReport = {
  policy: 'meta-rl',
  trialConfig: TrialConfigSchema.parse({ episodes: 3 }),
  opponents: [{
    opponent: 'center-first', trials: 2,
    // Both trials won game 0 and stopped: games 1 and 2 were never played, game 0 had two trials.
    episodes: [ep(0, 2, 1, 0), ep(1, 0, Number.NaN, Number.NaN), ep(2, 0, Number.NaN, Number.NaN)],
    finalReturn: 1, seFinal: 0, invalidRate: 0,
    bySeat: { X: [ep(0, 1, 1, Number.NaN)] },
    trialRewards: [[1], [1]],
  }],
};

describe('evaluation reports read back from JSON', () => {
  it('turns the nulls JSON wrote for NaN back into NaN and keeps every number', () => {
    const read = JSON.parse(JSON.stringify([report])) as EvalReport[];
    expect(read[0]!.opponents[0]!.episodes[1]!.meanReturn).toBeNull(); // what JSON does
    const [r] = reviveEvalReports(read);
    const o = r!.opponents[0]!;
    expect(o.episodes.map((e) => e.meanReturn)).toEqual([1, Number.NaN, Number.NaN]);
    expect(o.episodes.map((e) => e.seWin)).toEqual([0, Number.NaN, Number.NaN]);
    expect(o.bySeat!.X![0]!.seReturn).toBeNaN();
    expect(o.bySeat!.X![0]!.meanReturn).toBe(1);
    expect([o.finalReturn, o.seFinal, o.invalidRate, o.trials]).toEqual([1, 0, 0, 2]);
    expect(o.trialRewards).toEqual([[1], [1]]);
  });

  it('loadFinishedRun (how result scripts reuse a run) returns them revived', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrl-revive-'));
    const cfg = parseRunConfig(readConfigFile('examples/configs/bandit-meta-rl.yaml', ['trainer.steps=1']));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    writeFileSync(join(dir, 'metrics.jsonl'), JSON.stringify({ version: 0, seconds: 1 }) + '\n');
    writeFileSync(join(dir, 'eval.json'), JSON.stringify({ reports: [report] }));
    const run = loadFinishedRun(dir)!;
    const mean = run.eval![0]!.opponents[0]!.episodes[1]!.meanReturn;
    expect(mean).toBeNaN();
    expect(1 + mean).toBeNaN(); // not 1, as a null would give
  });
});
