/**
 * Reproduces docs/results/search-agent.md: `agentrl train examples/configs/search-kb.yaml` on each
 * declared seed (the knowledge base, the demonstrations, the model and the sampling all follow the
 * seed), then the held-out evaluation of the starting point (after the SFT warm start) and of the
 * RL-trained policy on the same questions, paired per question; and the same run at η = 0 next to
 * η = 2 on one seed: wall-clock to the same training reward.
 *
 *   node --import tsx examples/search-results.ts [--seeds 1,2,3] [--eta0-seed 1] [--quick] [--out DIR] [--runs DIR]
 *
 * Writes OUT/search-agent.{md,json} (default OUT runs/results; --out docs/results updates the
 * committed page); run directories go to --runs (default runs/search-results) and a finished run of
 * the same config is reused.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { loadFinishedRun, trainRun } from '../src/run/run.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { canonicalJson } from '../src/engine/checkpoint.ts';
import { meanSe } from '../src/eval/search-metrics.ts';
import type { SearchEvalSection } from '../src/run/search-task.ts';

const CONFIG = 'examples/configs/search-kb.yaml';
const o = new Command()
  .option('--seeds <list>', 'training seeds, declared before the run', '1,2,3')
  .option('--eta0-seed <n>', 'seed also run at η = 0 (wall-clock comparison); -1 = none', '1')
  .option('--set <key=value>', 'override applied to every run (repeatable), e.g. trainer.steps=300', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--label <name>', 'suffix of the output files and run directories (e.g. long)')
  .option('--quick', 'tiny runs for CI')
  .option('--out <dir>', 'results directory', 'runs/results')
  .option('--runs <dir>', 'run directories', 'runs/search-results')
  .parse()
  .opts<{ seeds: string; eta0Seed: string; set: string[]; label?: string; quick?: boolean; out: string; runs: string }>();
const seeds = o.seeds.split(',').map(Number);
const eta0Seed = Number(o.eta0Seed);
const quickSets = o.quick ? ['trainer.steps=2', 'search.sft.demos=64', 'search.sft.epochs=1', 'eval.trials=4', 'search.eval.turnBudgets=[2,5]'] : [];

interface RunSummary {
  seed: number;
  eta: number;
  dir: string;
  wallSeconds: number;
  sftSeconds: number;
  /** Per step: cumulative seconds and mean training reward. */
  curve: { seconds: number; reward: number }[];
  start: SearchEvalSection;
  trained: SearchEvalSection;
}

async function run(seed: number, eta: number): Promise<RunSummary> {
  const sets = [`seed=${seed}`, `search.kb.seed=${seed}`, `trainer.maxStaleness=${eta}`, ...o.set, ...quickSets];
  const raw = readConfigFile(CONFIG, sets);
  const dir = join(o.runs, `search-kb${o.label ? `-${o.label}` : ''}${o.quick ? '-quick' : ''}-eta${eta}-s${seed}`);
  const done = loadFinishedRun(dir);
  if (!done || canonicalJson(done.config) !== canonicalJson(parseRunConfig(raw))) {
    console.log(`[seed ${seed} η=${eta}] agentrl train ${CONFIG} ${sets.map((s) => `--set ${s}`).join(' ')} → ${dir}`);
    await trainRun(raw, { out: dir, onStep: (m, cfg) => { if ((m.version + 1) % 20 === 0 || m.version + 1 === cfg.trainer.steps) console.log(`  step ${m.version + 1} reward ${m.meanReward.toFixed(3)} (${m.seconds.toFixed(2)} s)`); } });
  } else console.log(`[seed ${seed} η=${eta}] reusing ${dir}`);
  const ev = JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')) as { sections: [SearchEvalSection, SearchEvalSection] };
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { seconds: number; meanReward: number });
  let t = 0;
  const curve = lines.map((m) => ({ seconds: (t += m.seconds), reward: m.meanReward }));
  const sftPath = join(dir, 'sft.json');
  const sftSeconds = existsSync(sftPath) ? (JSON.parse(readFileSync(sftPath, 'utf8')) as { seconds?: number }).seconds ?? Number.NaN : 0;
  return { seed, eta, dir, wallSeconds: t, sftSeconds, curve, start: ev.sections[0], trained: ev.sections[1] };
}

/** Mean F1 of each question (over its k samples), keyed by question id. */
function perQuestion(s: SearchEvalSection, filter: (hops: number) => boolean): Map<string, number> {
  const acc = new Map<string, number[]>();
  for (const r of s.records) if (filter(r.hops ?? 0)) acc.set(r.questionId, [...(acc.get(r.questionId) ?? []), r.f1]);
  return new Map([...acc].map(([q, xs]) => [q, xs.reduce((a, b) => a + b, 0) / xs.length]));
}

function paired(a: Map<string, number>, b: Map<string, number>) {
  const ids = [...a.keys()].filter((q) => b.has(q));
  return { start: meanSe(ids.map((q) => a.get(q)!)), trained: meanSe(ids.map((q) => b.get(q)!)), diff: meanSe(ids.map((q) => b.get(q)! - a.get(q)!)), n: ids.length };
}

const pct = (m: { mean: number; se: number }) => `${(100 * m.mean).toFixed(1)} ± ${(100 * m.se).toFixed(1)}`;
const smooth = (xs: number[], w = 10) => xs.map((_, i) => { const s = xs.slice(Math.max(0, i - w + 1), i + 1); return s.reduce((a, b) => a + b, 0) / s.length; });

const main: RunSummary[] = [];
for (const s of seeds) main.push(await run(s, 2));
const eta0 = eta0Seed >= 0 ? await run(eta0Seed, 0) : null;

const deep = (h: number) => h >= 3;
const rows = main.map((r) => ({ r, deep: paired(perQuestion(r.start, deep), perQuestion(r.trained, deep)) }));
const pooled = meanSe(rows.map((x) => x.deep.diff.mean));
const hopsAll = [...new Set(main.flatMap((r) => r.start.records.map((x) => x.hops ?? 0)))].sort((a, b) => a - b);
const lines: string[] = [];
lines.push(`| seed | start F1, ≥ 3 hops | trained F1, ≥ 3 hops | trained − start (paired) | ${hopsAll.map((h) => `${h} hops: start → trained`).join(' | ')} | RL wall-clock |`);
lines.push(`|---|---:|---:|---:|${hopsAll.map(() => '---:').join('|')}|---:|`);
for (const { r, deep: d } of rows) {
  const hop = hopsAll.map((h) => { const p = paired(perQuestion(r.start, (x) => x === h), perQuestion(r.trained, (x) => x === h)); return `${(100 * p.start.mean).toFixed(0)} → ${(100 * p.trained.mean).toFixed(0)}`; });
  lines.push(`| ${r.seed} | ${pct(d.start)} | ${pct(d.trained)} | **${(100 * d.diff.mean).toFixed(1)}** ± ${(100 * d.diff.se).toFixed(1)} | ${hop.join(' | ')} | ${r.wallSeconds.toFixed(0)} s |`);
}
const budgets = [...new Set(main.flatMap((r) => r.trained.turnBudgets.map((b) => b.maxTurns)))];
const budgetLines = [`| maxTurns | ${main.map((r) => `seed ${r.seed}: start → trained`).join(' | ')} |`, `|---|${main.map(() => '---:').join('|')}|`];
for (const m of budgets) {
  budgetLines.push(`| ${m} | ${main.map((r) => {
    const f = (s: SearchEvalSection) => { const b = s.turnBudgets.find((x) => x.maxTurns === m); return b ? meanSe(b.records.map((x) => x.f1)).mean : Number.NaN; };
    return `${(100 * f(r.start)).toFixed(1)} → ${(100 * f(r.trained)).toFixed(1)}`;
  }).join(' | ')} |`);
}
let etaSection = '';
if (eta0) {
  const eta2 = main.find((r) => r.seed === eta0.seed);
  if (eta2) {
    const target = Math.min(Math.max(...smooth(eta0.curve.map((c) => c.reward))), Math.max(...smooth(eta2.curve.map((c) => c.reward))));
    const reach = (r: RunSummary) => { const s = smooth(r.curve.map((c) => c.reward)); const i = s.findIndex((x) => x >= target - 1e-9); return i < 0 ? null : { step: i + 1, seconds: r.curve[i]!.seconds }; };
    const a = reach(eta0), b = reach(eta2);
    const f = (r: RunSummary) => pct(paired(perQuestion(r.start, deep), perQuestion(r.trained, deep)).trained);
    etaSection = [
      `| run (seed ${eta0.seed}) | RL wall-clock | steps/s | first step at the common best 10-step training reward ${target.toFixed(3)} | held-out F1, ≥ 3 hops |`,
      '|---|---:|---:|---:|---:|',
      `| η = 0 (synchronous) | ${eta0.wallSeconds.toFixed(0)} s | ${(eta0.curve.length / eta0.wallSeconds).toFixed(2)} | ${a ? `step ${a.step}, ${a.seconds.toFixed(0)} s` : '—'} | ${f(eta0)} |`,
      `| η = 2 (asynchronous) | ${eta2.wallSeconds.toFixed(0)} s | ${(eta2.curve.length / eta2.wallSeconds).toFixed(2)} | ${b ? `step ${b.step}, ${b.seconds.toFixed(0)} s` : '—'} | ${f(eta2)} |`,
    ].join('\n');
  }
}
const md = [
  `Held-out F1 (Avg@${main[0]!.start.records.filter((x) => x.questionId === main[0]!.start.records[0]?.questionId).length}) on the held-out world, ${rows[0]?.deep.n ?? 0} questions of ≥ 3 hops per seed (± = standard error across questions; the difference is paired per question).`,
  '',
  lines.join('\n'),
  '',
  `Mean over seeds of the paired gain on ≥ 3 hops: **${(100 * pooled.mean).toFixed(1)} points** (se across seeds ${(100 * pooled.se).toFixed(1)}).`,
  '',
  '### F1 on ≥ 3-hop questions against the turn budget',
  '',
  budgetLines.join('\n'),
  ...(etaSection ? ['', '### η = 0 next to η = 2', '', etaSection] : []),
].join('\n');
mkdirSync(o.out, { recursive: true });
const stem = `search-agent${o.label ? `-${o.label}` : ''}${o.quick ? '-quick' : ''}`;
writeFileSync(join(o.out, `${stem}.md`), md + '\n');
writeFileSync(join(o.out, `${stem}.json`), JSON.stringify({
  config: CONFIG, sets: o.set, seeds, eta0Seed, quick: !!o.quick,
  runs: [...main, ...(eta0 ? [eta0] : [])].map((r) => ({ seed: r.seed, eta: r.eta, dir: r.dir, wallSeconds: r.wallSeconds, sftSeconds: r.sftSeconds, curve: r.curve, deep: paired(perQuestion(r.start, deep), perQuestion(r.trained, deep)) })),
  pooledGain: pooled,
}, null, 2) + '\n');
console.log(md);
console.log(`wrote ${join(o.out, `${stem}.md`)} and .json`);
