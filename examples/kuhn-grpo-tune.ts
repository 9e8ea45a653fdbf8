/**
 * Tunes the 1-episode GRPO baseline of docs/results/meta-rl.md §2 on seeds that are not reported:
 * a grid over learning rate × entropy bonus, each an `agentrl train examples/configs/kuhn-grpo.yaml`
 * run (child processes, `--jobs` at a time with one kernel thread each), scored by the chips per
 * hand against the training mixture over all evaluated hands (the policy is memoryless, so every hand
 * index measures the same thing) on its own evaluation seed.
 *
 *   node --import tsx examples/kuhn-grpo-tune.ts [--seeds 100] [--lrs 1e-3,3e-3] [--entropies 0.3,0.1,0.03] [--jobs 2] [--out runs/tune]
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { EvalReport } from '../src/eval/trials.ts';

const o = new Command()
  .option('--seeds <list>', 'tuning seeds (never reported)', '100')
  .option('--lrs <list>', 'learning rates', '1e-3,3e-3')
  .option('--entropies <list>', 'entropy coefficients', '0.3,0.1,0.03')
  .option('--jobs <n>', 'runs at once', '2')
  .option('--steps <n>', 'training steps per run (default: the config\'s)')
  .option('--out <dir>', 'run directories', 'runs/tune')
  .parse()
  .opts<{ seeds: string; lrs: string; entropies: string; jobs: string; steps?: string; out: string }>();
const TRAIN = [{ name: 'conservative', weight: 5 }, { name: 'aggressive', weight: 5 }, { name: 'intermediate', weight: 6 }];

interface Job { lr: number; entropy: number; seed: number; dir: string }
const jobs: Job[] = [];
for (const seed of o.seeds.split(',').map(Number)) for (const lr of o.lrs.split(',').map(Number)) for (const entropy of o.entropies.split(',').map(Number)) jobs.push({ lr, entropy, seed, dir: join(o.out, `grpo-lr${lr}-ent${entropy}-s${seed}`) });

function run(j: Job): Promise<void> {
  if (existsSync(join(j.dir, 'eval.json'))) return Promise.resolve();
  const sets = [`seed=${j.seed}`, `optimizer.lr=${j.lr}`, `trainer.loss.entropyCoef=${j.entropy}`, 'eval.seed=5000', 'eval.untrained=false', `eval.opponents=${JSON.stringify(TRAIN.map((t) => t.name))}`, ...(o.steps ? [`trainer.steps=${o.steps}`] : [])];
  const args = ['bin/agentrl.mjs', 'train', 'examples/configs/kuhn-grpo.yaml', '--out', j.dir, ...sets.flatMap((s) => ['--set', s])];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { env: { ...process.env, AGENTRL_THREADS: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`run ${j.dir} exited with ${code}`))));
  });
}

async function main(): Promise<void> {
  mkdirSync(o.out, { recursive: true });
  const queue = [...jobs];
  await Promise.all(Array.from({ length: Number(o.jobs) }, async () => {
    for (let j = queue.shift(); j; j = queue.shift()) {
      const t0 = performance.now();
      await run(j);
      console.log(`done ${j.dir} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }));
  const lines = ['| lr | entropy | seed | chips/hand vs mixture (all hands) | se |', '|---|---|---|---|---|'];
  const rows = jobs.map((j) => {
    const r = (JSON.parse(readFileSync(join(j.dir, 'eval.json'), 'utf8')) as { reports: EvalReport[] }).reports.find((x) => x.policy === 'grpo-1ep')!;
    let m = 0, v = 0;
    const W = TRAIN.reduce((a, t) => a + t.weight, 0);
    for (const t of TRAIN) {
      const xs = r.opponents.find((x) => x.opponent === t.name)!.trialRewards.flat();
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1));
      m += (t.weight / W) * mean;
      v += (t.weight / W) ** 2 * (sd * sd) / xs.length;
    }
    lines.push(`| ${j.lr} | ${j.entropy} | ${j.seed} | ${m.toFixed(4)} | ${Math.sqrt(v).toFixed(4)} |`);
    return { ...j, chips: m, se: Math.sqrt(v) };
  });
  const best = rows.reduce((a, b) => (b.chips > a.chips ? b : a));
  lines.push('', `Best: lr ${best.lr}, entropy ${best.entropy} (${best.chips.toFixed(4)} chips/hand).`);
  writeFileSync(join(o.out, 'kuhn-grpo-tune.md'), lines.join('\n') + '\n');
  console.log(lines.join('\n'));
}

await main();
