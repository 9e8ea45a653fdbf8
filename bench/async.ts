/**
 * Synchronous vs asynchronous RL throughput on a long-tailed multi-turn tool-agent workload
 * (src/agents/toy-tool-agent.ts), with real generation on the built-in engine and real training
 * steps in a worker thread, run back to back in one process:
 *   sync      η = 0, maxConcurrent = B·G (each step's batch generated together, then trained on)
 *   one-step  η = 1, maxConcurrent = 2·B·G
 *   async     η = 4, maxConcurrent = 5·B·G
 * twice: with lognormal tool latency and with zero latency (pure generation).
 *
 *   npm run bench:async [-- --quick] [-- --steps N] [-- --write]
 *
 * Prints its table and one JSON line last; with --write it also puts the table into
 * docs/results/async.md (between markers; --quick has its own section).
 */
import { readFileSync } from 'node:fs';
import { writeResultsSection } from '../src/eval/results-file.ts';
import { cpus } from 'node:os';
import { Transformer } from '../src/engine/model.ts';
import { BuiltinEngine } from '../src/engine/builtin-engine.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { loadNativeBackend } from '../src/engine/native.ts';
import { WorkerTrainer } from '../src/train/worker-trainer.ts';
import { Trainer, type RunTotals } from '../src/train/trainer.ts';
import { toyToolMaxTokens, toyToolTasks, toyToolTokenizer, toyToolWorkflow, type ToyToolAgentConfigInput } from '../src/agents/toy-tool-agent.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const write = args.includes('--write') && !args.includes('--no-write');
const stepsArg = args.indexOf('--steps');
const splitArg = args.indexOf('--async-threads');
/** Kernel threads per side (generation, training) in the overlapped modes; sync time-shares both cores. */
const ASYNC_THREADS = splitArg >= 0 ? Number(args[splitArg + 1]) : 1;
const STEPS = stepsArg >= 0 ? Number(args[stepsArg + 1]) : quick ? 16 : 100;
const LATENCY_SCALE = quick ? 0.1 : 1;
const B = 4;
const G = 4;
const SEED = 7;
const V = 64;
const MODEL = { vocabSize: V, contextLength: 256, nLayer: 2, nHead: 4, nEmbd: 64 };
const OPT = { lr: 1e-3, weightDecay: 0, microBatchTokens: 1024 };
const AGENT: ToyToolAgentConfigInput = {
  vocabSize: V, tokensPerTurn: 8, longFraction: 0.1, shortTurns: [1, 3], longTurns: [20, 24],
  latencyMedianSeconds: 0.3 * LATENCY_SCALE, latencyP99Seconds: 3 * LATENCY_SCALE,
};
const MODES = [
  { name: 'sync (η=0)', eta: 0, concurrent: B * G },
  { name: 'one-step overlap (η=1)', eta: 1, concurrent: 2 * B * G },
  { name: 'fully async (η=4)', eta: 4, concurrent: 5 * B * G },
];

function loadavg(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

interface RunRow {
  latency: boolean;
  mode: string;
  eta: number;
  concurrent: number;
  totals: RunTotals;
  /** Groups admitted but never trained on when the run stopped: finished (ready) and still running (aborted). */
  unfinished: { ready: number; aborted: number };
  meanReward: number;
  load: string;
}

async function runOne(mode: (typeof MODES)[number], latency: boolean): Promise<RunRow> {
  const agent = latency ? AGENT : { ...AGENT, latencyMedianSeconds: 0, latencyP99Seconds: 0 };
  const threads = mode.eta === 0 ? 2 : ASYNC_THREADS;
  const trainer = new WorkerTrainer({ model: MODEL, optimizer: OPT, seed: SEED, threads });
  await trainer.ready();
  const backend = loadNativeBackend({ threads }) ?? defaultBackend();
  const engine = new BuiltinEngine(new Transformer(MODEL, backend, SEED), toyToolTokenizer(V), { maxBatch: 5 * B * G, seed: SEED });
  engine.setWeights(trainer.initialWeights(), 0);
  const load = loadavg();
  const at = new Trainer({
    config: { steps: STEPS, batchSize: B, groupSize: G, maxStaleness: mode.eta, maxConcurrent: mode.concurrent, loss: { kind: 'decoupled_ppo' } },
    engine,
    trainer,
    source: toyToolTasks(SEED, V),
    workflow: toyToolWorkflow(engine, agent),
  });
  const r = await at.run();
  await trainer.close();
  const t = r.totals;
  const meanReward = r.steps.reduce((a, s) => a + s.meanReward, 0) / r.steps.length;
  process.stderr.write(
    `${latency ? 'latency' : 'no-latency'} ${mode.name}: ${t.samples} samples in ${t.wallSeconds.toFixed(1)} s = ${t.samplesPerSecond.toFixed(2)}/s, ` +
      `trainer busy ${(100 * t.trainerBusyFraction).toFixed(0)}%, rollout busy ${(100 * t.rolloutBusyFraction).toFixed(0)}%, occupancy ${t.generationOccupancy.toFixed(1)}, ` +
      `max staleness ${t.maxStaleness}, max version spread ${t.maxVersionSpread}, interruptions ${t.interruptions} (load ${load})\n`,
  );
  return { latency, mode: mode.name, eta: mode.eta, concurrent: mode.concurrent, totals: t, unfinished: { ready: r.leftover.ready.length, aborted: r.leftover.aborted.length }, meanReward, load };
}

function histogramText(h: Record<number, number>): string {
  return Object.entries(h).map(([k, v]) => `${k}:${v}`).join(' ');
}

function table(rows: RunRow[], base: RunRow): string {
  const lines = [
    '| mode | concurrent rollouts | samples/s | × sync | trained tokens/s | wall s | trainer busy | rollout busy | gen. batch occupancy | group staleness (v:count) | version spread (v:traj.) | groups left unfinished (finished / running) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const t = r.totals;
    lines.push(
      `| ${r.mode} | ${r.concurrent} | ${t.samplesPerSecond.toFixed(2)} | ${(t.samplesPerSecond / base.totals.samplesPerSecond).toFixed(2)} | ${t.trainedTokensPerSecond.toFixed(0)} | ${t.wallSeconds.toFixed(1)} | ` +
        `${(100 * t.trainerBusyFraction).toFixed(1)}% | ${(100 * t.rolloutBusyFraction).toFixed(0)}% | ${t.generationOccupancy.toFixed(1)} | ${histogramText(t.staleness)} | ${histogramText(t.versionSpread)} | ${r.unfinished.ready} / ${r.unfinished.aborted} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const backend = defaultBackend().name;
  process.stderr.write(`bench:async ${quick ? '--quick ' : ''}steps=${STEPS} B=${B} G=${G} latency scale ${LATENCY_SCALE} backend ${backend} (load ${loadBefore})\n`);
  const rows: RunRow[] = [];
  for (const latency of [true, false]) for (const mode of MODES) rows.push(await runOne(mode, latency));
  const loadAfter = loadavg();
  const lat = rows.filter((r) => r.latency);
  const nolat = rows.filter((r) => !r.latency);
  const sps = (rs: RunRow[], eta: number) => rs.find((r) => r.eta === eta)!.totals.samplesPerSecond;
  const result = {
    quick,
    steps: STEPS,
    samples_per_run: STEPS * B * G,
    sync_samples_per_s: sps(lat, 0),
    one_step_samples_per_s: sps(lat, 1),
    async_samples_per_s: sps(lat, 4),
    speedup: sps(lat, 4) / sps(lat, 0),
    speedup_one_step: sps(lat, 1) / sps(lat, 0),
    sync_samples_per_s_no_latency: sps(nolat, 0),
    async_samples_per_s_no_latency: sps(nolat, 4),
    speedup_no_latency: sps(nolat, 4) / sps(nolat, 0),
    trained_tokens_per_s: Object.fromEntries(rows.map((r) => [`${r.latency ? 'latency' : 'no_latency'}_eta${r.eta}`, Math.round(r.totals.trainedTokensPerSecond)])),
    unfinished_groups: Object.fromEntries(rows.map((r) => [`${r.latency ? 'latency' : 'no_latency'}_eta${r.eta}`, r.unfinished])),
  };
  const maxTokens = toyToolMaxTokens(AGENT);
  const section = [
    `## Throughput: sync vs one-step overlap vs fully async${quick ? ' (--quick)' : ''}`,
    '',
    `Command: \`npm run bench:async${quick ? ' -- --quick' : ''}\` (measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC).`,
    `Machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}, backend ${backend}; ` +
      `generation on the main thread, training in a worker thread; kernel threads: sync 2 + 2 (the two phases alternate), overlapped modes ${ASYNC_THREADS} + ${ASYNC_THREADS} (the cores are split, as AReaL splits GPUs; \`--async-threads N\` changes it). ` +
      `Load average (1/5/15 min) before: ${loadBefore}, after: ${loadAfter} — other agents share this machine.`,
    '',
    'Workload (src/agents/toy-tool-agent.ts): each episode is one growing sequence; per tool call the model generates',
    `${AGENT.tokensPerTurn} tokens (a real batched generation on the built-in engine), then a simulated tool call appends 2 masked tool tokens;`,
    'a final generation of 8 tokens is the answer, rewarded by a verifiable rule (fraction of answer tokens in the task\'s class, id mod 4).',
    'Tool calls per episode: 90% uniform in {1, 2, 3}, 10% uniform in {20 … 24} (≈10× the typical 2; up to ' + `${maxTokens} tokens).`,
    `Tool latency: lognormal, median ${(0.3 * LATENCY_SCALE).toFixed(3)} s, p99 ${(3 * LATENCY_SCALE).toFixed(2)} s` +
      (quick ? ' (--quick scales the specified median 0.3 s / p99 3 s by 0.1)' : '') + '. Turn counts and latencies are seeded per episode, so all modes see the same workload.',
    `Model: width ${MODEL.nEmbd}, ${MODEL.nLayer} layers, ${MODEL.nHead} heads, context ${MODEL.contextLength}, vocabulary ${V}. ` +
      `Training: ${STEPS} steps × ${B} groups × ${G} rollouts = ${STEPS * B * G} trained samples per run, GRPO advantages, decoupled PPO, AdamW lr ${OPT.lr}.`,
    `Trainer: AdamW lr ${OPT.lr}, microBatchTokens ${OPT.microBatchTokens} (so one long episode does not pad the whole batch to 250 tokens).`,
    'samples/s = trained samples / wall time of the run (first batch request to last weight update); trained tokens/s counts the loss-masked (model) tokens trained on. Trainer busy = worker compute time / wall.',
    'Groups left unfinished: admitted groups never trained on when the run stopped — finished but not consumed / still running (aborted). Asynchronous modes pay for their head start with this work.',
    'Rollout busy = fraction of the time with ≥ 1 rollout in flight. Generation batch occupancy = mean rows per batched decode step.',
    '',
    '### With tool latency',
    '',
    table(lat, lat[0]!),
    '',
    '### Zero latency (pure generation)',
    '',
    table(nolat, nolat[0]!),
    '',
    `Fully async (η = 4) vs sync: **${result.speedup.toFixed(2)}×** samples/s with tool latency, **${result.speedup_no_latency.toFixed(2)}×** without.`,
    '',
    '```json',
    JSON.stringify(result),
    '```',
  ].join('\n');
  if (write) writeResultsSection('docs/results/async.md', `bench:async${quick ? '-quick' : ''}`, section, 'Asynchronous RL: throughput and staleness');
  console.log(JSON.stringify(result));
}

await main();
