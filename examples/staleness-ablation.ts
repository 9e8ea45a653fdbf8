/**
 * Staleness ablation (AReaL's decoupled-PPO experiment, at toy scale): does training on samples up to
 * η = 4 versions old hurt, and does decoupled PPO fix it?
 *
 * Task: the target-sequence GRPO task of test/learning.test.ts (after a 2-token prompt, emit a fixed
 * 4-token target; reward = fraction of positions right; chance 1/16). Three settings, several seeds:
 *   - decoupled PPO, η = 0 (synchronous)
 *   - decoupled PPO, η = 4 (fully async; proximal logprobs recomputed on the trainer)
 *   - naive PPO,     η = 4 (behaviour logprobs used as π_old)
 * Training runs in a worker thread while the main thread generates (the real asynchronous setting).
 * Reported: the batch reward along training and the final policy's reward on fresh samples.
 *
 *   node --import tsx examples/staleness-ablation.ts [--quick] [--write]   (--write puts the table into docs/results/async.md)
 */
import { readFileSync } from 'node:fs';
import { writeResultsSection } from '../src/eval/results-file.ts';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import type { Tokenizer } from '../src/engine/types.ts';
import { appendCompletion, appendContext, emptySeq, type Trajectory } from '../src/core/types.ts';
import { targetSequenceReward } from '../src/envs/target-sequence.ts';
import { WorkerTrainer } from '../src/train/worker-trainer.ts';
import { Trainer } from '../src/train/trainer.ts';
import type { RolloutWorkflow } from '../src/core/workflow.ts';
import { histogramStats, mergeHistograms, type Histogram } from '../src/train/staleness.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const write = args.includes('--write') && !args.includes('--no-write');
const SEEDS = quick ? [1, 2, 3] : [1, 2, 3, 4, 5];
const STEPS = quick ? 60 : 150;
const V = 16;
const MODEL = { vocabSize: V, contextLength: 16, nLayer: 2, nHead: 2, nEmbd: 32 };
const OPT = { lr: 3e-3, weightDecay: 0 };
const B = 4; // groups per batch
const G = 16; // rollouts per group → 64 samples per step
const TARGETS = [[3, 7, 2, 9], [5, 5, 1, 12]];
const EVAL_PER_PROMPT = 128;
const WINDOW = 10; // steps averaged per reward-curve point

const SETTINGS = [
  { name: 'decoupled PPO, η=0 (sync)', eta: 0, kind: 'decoupled_ppo' as const },
  { name: 'decoupled PPO, η=4', eta: 4, kind: 'decoupled_ppo' as const },
  { name: 'naive PPO, η=4', eta: 4, kind: 'ppo' as const },
];

interface Task {
  id: string;
  prompt: number[];
  target: number[];
}

function* tasks(): Generator<Task> {
  for (let i = 0; ; i++) {
    const k = i % TARGETS.length;
    yield { id: `t${k}`, prompt: [14, k], target: TARGETS[k]! };
  }
}

function tokenizer(): Tokenizer {
  return { vocabSize: V, eosId: -1, encode: (t) => t.split(/\s+/).filter(Boolean).map(Number), decode: (ids) => ids.join(' '), tokenString: String, tokenId: (s) => (/^\d+$/.test(s) && Number(s) < V ? Number(s) : undefined) };
}

function workflow(engine: BuiltinEngine): RolloutWorkflow<Task> {
  return async (task, ctx): Promise<Trajectory> => {
    const c = await engine.generate(task.prompt, { maxTokens: 4, temperature: 1 });
    const seq = emptySeq();
    appendContext(seq, task.prompt);
    appendCompletion(seq, c);
    const reward = targetSequenceReward(c.ids, task.target);
    return { id: `${ctx.groupId}/${ctx.member}`, groupId: ctx.groupId, samples: [{ seq, reward, keys: { prompt: task.id }, temperature: 1 }], reward, info: {} };
  };
}

interface RunResult {
  curve: number[];
  finalReward: number;
  staleness: Histogram;
  seconds: number;
  cappedFrac: number;
  clipFrac: number;
}

async function runOne(setting: (typeof SETTINGS)[number], seed: number): Promise<RunResult> {
  const trainer = new WorkerTrainer({ model: MODEL, optimizer: OPT, seed });
  await trainer.ready();
  const engine = new BuiltinEngine(new Transformer(MODEL, defaultBackend(), seed), tokenizer(), { maxBatch: 5 * B * G, seed: 1000 + seed });
  engine.setWeights(trainer.initialWeights(), 0);
  const at = new Trainer({
    config: { steps: STEPS, batchSize: B, groupSize: G, maxStaleness: setting.eta, loss: { kind: setting.kind } },
    engine, trainer, source: tasks(), workflow: workflow(engine),
  });
  const r = await at.run();
  await trainer.close();
  const rewards = r.steps.map((s) => s.meanReward);
  const curve: number[] = [];
  for (let i = 0; i < rewards.length; i += WINDOW) curve.push(mean(rewards.slice(i, i + WINDOW)));
  // The final policy on fresh samples (the engine holds the last published weights).
  const evalTasks = TARGETS.flatMap((target, k) => Array.from({ length: EVAL_PER_PROMPT }, () => ({ prompt: [14, k], target })));
  const outs = await Promise.all(evalTasks.map((t) => engine.generate(t.prompt, { maxTokens: 4, temperature: 1 })));
  if (engine.version() !== STEPS) throw new Error(`evaluation ran on version ${engine.version()}, expected ${STEPS}`);
  const finalReward = mean(outs.map((o, i) => targetSequenceReward(o.ids, evalTasks[i]!.target)));
  const staleness: Histogram = {};
  for (const s of r.steps) mergeHistograms(staleness, s.tokenStaleness);
  return {
    curve, finalReward, staleness, seconds: r.totals.wallSeconds,
    cappedFrac: mean(r.steps.map((s) => s.trainer.cappedFrac ?? 0)),
    clipFrac: mean(r.steps.map((s) => s.trainer.clipFrac ?? 0)),
  };
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
}
function sd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}
const fmt = (xs: number[]) => `${mean(xs).toFixed(3)} ± ${sd(xs).toFixed(3)}`;

async function main(): Promise<void> {
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const t0 = performance.now();
  const results = new Map<string, RunResult[]>();
  for (const seed of SEEDS) {
    for (const s of SETTINGS) {
      const r = await runOne(s, seed);
      (results.get(s.name) ?? results.set(s.name, []).get(s.name)!).push(r);
      process.stderr.write(`seed ${seed} ${s.name}: final ${r.finalReward.toFixed(3)}, token staleness mean ${histogramStats(r.staleness).mean.toFixed(2)}, ${r.seconds.toFixed(1)} s\n`);
    }
  }
  const minutes = (performance.now() - t0) / 60000;
  const nPoints = Math.ceil(STEPS / WINDOW);
  const header = `| setting | final reward (mean ± sd over ${SEEDS.length} seeds) | per seed | mean token staleness | capped tokens | clipped tokens |`;
  const rows = SETTINGS.map((s) => {
    const rs = results.get(s.name)!;
    const st: Histogram = {};
    for (const r of rs) mergeHistograms(st, r.staleness);
    return `| ${s.name} | ${fmt(rs.map((r) => r.finalReward))} | ${rs.map((r) => r.finalReward.toFixed(2)).join(', ')} | ${histogramStats(st).mean.toFixed(2)} | ${(100 * mean(rs.map((r) => r.cappedFrac))).toFixed(1)}% | ${(100 * mean(rs.map((r) => r.clipFrac))).toFixed(1)}% |`;
  });
  const curveHeader = `| steps | ${SETTINGS.map((s) => s.name).join(' | ')} |`;
  const curveRows = Array.from({ length: nPoints }, (_, p) => {
    const cells = SETTINGS.map((s) => fmt(results.get(s.name)!.map((r) => r.curve[p]!)));
    return `| ${p * WINDOW}–${Math.min(STEPS, (p + 1) * WINDOW) - 1} | ${cells.join(' | ')} |`;
  });
  const section = [
    `## Staleness ablation: naive PPO vs decoupled PPO${quick ? ' (--quick)' : ''}`,
    '',
    `Command: \`node --import tsx examples/staleness-ablation.ts${quick ? ' --quick' : ''}\` (${minutes.toFixed(1)} min; load average before: ${load}).`,
    `Task: target-sequence GRPO (prompt [14, k] → target ${TARGETS.map((t) => `[${t.join(', ')}]`).join(' or ')}, reward = fraction of the 4 positions right, chance ≈ 0.06).`,
    `Model: width ${MODEL.nEmbd}, ${MODEL.nLayer} layers, vocabulary ${V}; AdamW lr ${OPT.lr}; ${STEPS} steps × ${B} groups × ${G} rollouts; GRPO advantages; ε = 0.2, behaviour-weight cap 5 (mask).`,
    'Trainer in a worker thread, generation on the main thread (maxConcurrent = (η + 1)·B·G). Final reward: the last weights, ' +
      `${EVAL_PER_PROMPT} fresh samples per prompt at temperature 1. Token staleness = trainer version − version that sampled the token.`,
    '',
    header,
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    `Batch reward along training (mean ± sd over seeds of the mean batch reward in windows of ${WINDOW} steps; batches of the η = 4 runs were sampled by older policies):`,
    '',
    curveHeader,
    `|---|${SETTINGS.map(() => '---').join('|')}|`,
    ...curveRows,
  ].join('\n');
  if (write) writeResultsSection('docs/results/async.md', 'ablation:staleness', section, 'Asynchronous RL: throughput and staleness');
  console.log(section);
}

await main();
