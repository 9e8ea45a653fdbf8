/** Shared by the result scripts: run-or-reuse of one arm × seed, and across-seed means with seed spread and evaluation se. */
import { readConfigFile } from '../src/cli/config-file.ts';
import { canonicalJson } from '../src/engine/checkpoint.ts';
import type { EvalReport } from '../src/eval/trials.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { loadFinishedRun, trainRun, type TrainRunResult } from '../src/run/run.ts';
import type { StepMetrics } from '../src/train/trainer.ts';

export const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '–');

/** Element-wise a − b (paired per trial / per level). */
export const diff = (a: number[], b: number[]) => a.map((x, i) => x - b[i]!);

/** Mean across seeds of per-seed (mean, se): sd = seed spread, se = evaluation se of the across-seed mean. */
export function acrossSeeds(per: [number, number][]): { mean: number; sd: number; se: number } {
  const n = per.length;
  const mean = per.reduce((a, x) => a + x[0], 0) / n;
  const sd = n > 1 ? Math.sqrt(per.reduce((a, x) => a + (x[0] - mean) ** 2, 0) / (n - 1)) : Number.NaN;
  return { mean, sd, se: Math.sqrt(per.reduce((a, x) => a + x[1] ** 2, 0)) / n };
}

/** `mean (sd …, se …)` of `acrossSeeds`. */
export const seedCell = (per: [number, number][]) => {
  const c = acrossSeeds(per);
  return `${f3(c.mean)} (sd ${f3(c.sd)}, se ${f3(c.se)})`;
};

/** One arm × seed of a result script: a finished run of the same config is reused, else it trains (resuming). */
export interface SeedRun {
  result: TrainRunResult;
  /** The `agentrl train` command that reproduces the run. */
  command: string;
  untrained: EvalReport;
  trained: EvalReport;
  random: EvalReport;
}

export async function runOrReuse(o: { label: string; config: string; sets: string[]; out: string; every: number; progress: (m: StepMetrics) => string }): Promise<SeedRun> {
  const raw = readConfigFile(o.config, o.sets);
  const command = `agentrl train ${o.config} ${o.sets.map((s) => `--set ${s}`).join(' ')} --out ${o.out}`;
  const done = loadFinishedRun(o.out);
  let result: TrainRunResult;
  if (done && canonicalJson(done.config) === canonicalJson(parseRunConfig(raw))) {
    console.log(`[${o.label}] reusing the finished run in ${o.out}`);
    result = done;
  } else {
    console.log(`[${o.label}] ${command}`);
    result = await trainRun(raw, {
      out: o.out, resume: true,
      onStep: (m, cfg) => {
        if ((m.version + 1) % o.every === 0 || m.version + 1 === cfg.trainer.steps) console.log(`  [${o.label}] step ${m.version + 1} ${o.progress(m)}`);
      },
    });
  }
  const [untrained, trained, random] = result.eval!;
  return { result, command, untrained: untrained!, trained: trained!, random: random! };
}

/** The results page's last lines: each run's command, then its compute (trained / processed tokens, train seconds). */
export function commandsAndCompute(runs: readonly { arm: string; seed: number; command: string; result: TrainRunResult }[]): string[] {
  return [
    'Commands (one per run):', '', ...runs.map((r) => `- \`${r.command}\``), '',
    'Compute per run (trained tokens / processed tokens / train seconds):', '', ...runs.map((r) => {
      const h = r.result.history as unknown as Record<string, number>[];
      const sum = (k: string) => h.reduce((a, m) => a + (Number(m[k]) || 0), 0);
      return `- ${r.arm} seed ${r.seed}: ${sum('trainedTokens')} / ${sum('processedTokens')} / ${sum('seconds').toFixed(0)} s`;
    }), '',
  ];
}
