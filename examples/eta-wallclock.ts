/**
 * Wall-clock of the same Kuhn meta-RL recipe at η = 0 (synchronous; both phases use every core in
 * turn) and η = 2 (rollouts overlap training in a worker thread; the cores are split half and half),
 * run back to back on the same seed and steps.
 *
 *   node --import tsx examples/eta-wallclock.ts [--steps 40] [--seed 10] [--out runs/eta-wallclock]
 */
import { Command } from 'commander';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { readConfigFile } from '../src/cli/config-file.ts';
import { trainRun } from '../src/run/run.ts';

const o = new Command().option('--steps <n>', 'steps per run', '40').option('--seed <n>', 'seed', '10').option('--out <dir>', 'run directories', 'runs/eta-wallclock').parse().opts<{ steps: string; seed: string; out: string }>();
const rows: string[] = ['| η | wall s | steps/s | samples/s | trained tokens/s | per-step max staleness (mean) | mean reward (training) |', '|---|---|---|---|---|---|---|'];
for (const eta of [0, 2]) {
  const out = join(o.out, `eta${eta}`);
  rmSync(out, { recursive: true, force: true });
  const cfg = readConfigFile('examples/configs/kuhn-meta-rl.yaml', [`seed=${o.seed}`, `trainer.steps=${o.steps}`, `trainer.maxStaleness=${eta}`, 'eval.trials=0', 'checkpointEvery=0']);
  const r = await trainRun(cfg, { out });
  const wall = r.wallSeconds;
  const samples = r.history.reduce((a, m) => a + m.samples, 0);
  const tokens = r.history.reduce((a, m) => a + m.trainedTokens, 0);
  const stale = r.history.reduce((a, m) => a + m.maxStaleness, 0) / r.history.length;
  const reward = r.history.reduce((a, m) => a + m.meanReward, 0) / r.history.length;
  rows.push(`| ${eta} | ${wall.toFixed(1)} | ${(r.steps / wall).toFixed(2)} | ${(samples / wall).toFixed(0)} | ${(tokens / wall).toFixed(0)} | ${stale.toFixed(2)} | ${reward.toFixed(3)} |`);
  console.log(rows.at(-1));
}
console.log(rows.join('\n'));
