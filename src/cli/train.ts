/**
 * `agentrl train CONFIG`: train any built-in task from a YAML/JSON config into a run directory, with a
 * progress bar (ETA, reward, loss, tokens/s) on a terminal, plain lines otherwise, and JSON lines with
 * `--json` (src/cli/progress.ts). `--resume` continues a killed run. `--model DIR`
 * trains a pretrained model (a Hugging Face directory or a .gguf file) in place of the config's
 * built-in one: `model` becomes `{ path: DIR }`, then `--set` applies (e.g. `--set model.lora.rank=8`).
 */
import { existsSync } from 'node:fs';
import { basename, extname, join, relative } from 'node:path';
import { readConfigFile } from './config-file.ts';
import { trainRun, type TrainRunResult } from '../run/run.ts';
import { trainPopulationRun } from '../run/population-run.ts';
import { applyOverrides, isPathModel, parseRunConfig, withModelPath } from '../run/run-config.ts';
import { evalTable, type EvalReport } from '../eval/trials.ts';
import type { StepMetrics } from '../train/trainer.ts';
import { Progress, progressMode, withStdoutForJson } from './progress.ts';
import { plotRun } from './plot.ts';

export interface TrainCliOptions {
  out?: string;
  set: string[];
  resume: boolean;
  /** Train this pretrained model (HF directory or .gguf) instead of the config's model. */
  model?: string;
  /** JSON lines on stdout (start, one per step, summary) instead of a bar or plain lines. */
  json?: boolean;
}

export async function runTrainCommand(configPath: string, o: TrainCliOptions): Promise<TrainRunResult | null> {
  const file = readConfigFile(configPath);
  const raw = applyOverrides(o.model !== undefined ? withModelPath(file, o.model) : file, o.set);
  const cfg = parseRunConfig(raw);
  const out = o.out ?? join('runs', basename(configPath, extname(configPath)));
  const json = o.json === true;
  const total = cfg.trainer.steps;
  const progress = new Progress({ label: 'training', unit: cfg.population ? 'rounds' : 'steps', total, mode: progressMode({ json }), labels: { tokensPerSecond: 'tok/s', maxStaleness: 'staleness' } });
  const model = isPathModel(cfg.model) ? `, model ${cfg.model.path}${cfg.model.lora ? ` with LoRA rank ${cfg.model.lora.rank}` : ''}` : '';
  if (json) progress.event({ event: 'start', command: 'train', config: configPath, out, task: cfg.task, ...(isPathModel(cfg.model) ? { model: cfg.model.path } : {}), steps: total, batchSize: cfg.trainer.batchSize, groupSize: cfg.trainer.groupSize, maxStaleness: cfg.trainer.maxStaleness, population: !!cfg.population });
  else console.log(`agentrl train ${configPath} → ${out} (${cfg.task}${model}, ${total} steps of ${cfg.trainer.batchSize} groups × ${cfg.trainer.groupSize}, η = ${cfg.trainer.maxStaleness})`);
  if (cfg.population) {
    // Population rounds report through their own log lines (one per round): JSON log events in --json mode.
    const t0 = performance.now();
    const log = json ? (message: string) => progress.event({ event: 'log', message }) : console.log;
    const { reports } = await withStdoutForJson(json, () => trainPopulationRun(raw, { out, resume: o.resume, log }));
    const files = plotRun(out, { warn: console.warn });
    const wallSeconds = (performance.now() - t0) / 1000;
    if (json) progress.event({ event: 'summary', out, steps: total, wallSeconds, eval: evalSummary(reports), files: files.map((f) => relative(out, f)) });
    else console.log(`wrote ${out}/config.json, metrics.jsonl, population/, ${files.map((f) => relative(out, f)).join(', ')} (${wallSeconds.toFixed(0)} s)`);
    return null;
  }
  let first = true;
  const onStep = (m: StepMetrics) => {
    const done = Math.min(total, m.version + 1);
    // A resumed run's first step is not step 1: the ETA's rate counts this invocation's steps only.
    if (first) progress.rebase(done - 1);
    first = false;
    progress.update(done, {
      reward: m.meanReward,
      ...(m.episodeReward.length > 0 ? { episodes: m.episodeReward } : {}),
      loss: m.loss,
      ...(cfg.trainer.maxStaleness > 0 ? { maxStaleness: m.maxStaleness } : {}),
      tokensPerSecond: m.seconds > 0 ? m.processedTokens / m.seconds : null,
    });
  };
  let result: TrainRunResult;
  progress.start(0);
  try {
    result = await withStdoutForJson(json, () => trainRun(raw, { out, resume: o.resume, onStep }));
  } finally {
    progress.stop();
  }
  const files = ['config.json', 'metrics.jsonl', 'checkpoint/', ...['eval.json', 'eval.md', 'plot.svg', 'plot.png', 'tb/'].filter((f) => existsSync(join(out, f)))];
  if (json) {
    const last = result.history.at(-1);
    progress.event({
      event: 'summary', out, steps: result.steps, wallSeconds: result.wallSeconds,
      ...(last ? { last: { reward: last.meanReward, episodeReward: last.episodeReward, loss: last.loss } } : {}),
      ...(result.eval ? { eval: evalSummary(result.eval) } : {}),
      ...(result.toolEval ? { toolEval: result.toolEval } : {}),
      ...(result.searchEval ? { searchEval: result.searchEval.policies.map((p) => ({ label: p.label, turnBudgets: p.turnBudgets, meanTurns: p.meanTurns, stops: p.stops })) } : {}),
      files,
    });
    return result;
  }
  if (result.eval) console.log('\n' + evalTable(result.eval) + '\n');
  if (result.toolEval) console.log(`held-out reward: untrained ${result.toolEval.untrained?.toFixed(3) ?? '-'} → trained ${result.toolEval.trained.toFixed(3)}`);
  if (result.searchEval) console.log('\n' + result.searchEval.markdown + '\n');
  console.log(`wrote ${out}/${files.join(', ')} (${result.wallSeconds.toFixed(0)} s)`);
  return result;
}

/** Per policy and opponent: the final-episode return and the reward and win rate by episode index. */
function evalSummary(reports: EvalReport[]) {
  return reports.map((r) => ({
    policy: r.policy,
    opponents: r.opponents.map((x) => ({ opponent: x.opponent, trials: x.trials, finalReturn: x.finalReturn, meanReturn: x.episodes.map((e) => e.meanReturn), winRate: x.episodes.map((e) => e.winRate) })),
  }));
}
