/**
 * `agentrl train CONFIG`: train any built-in task from a YAML/JSON config into a run directory, with a
 * progress bar on a TTY and plain lines otherwise. `--resume` continues a killed run. `--model DIR`
 * trains a pretrained model (a Hugging Face directory or a .gguf file) in place of the config's
 * built-in one: `model` becomes `{ path: DIR }`, then `--set` applies (e.g. `--set model.lora.rank=8`).
 */
import { basename, extname, join } from 'node:path';
import cliProgress from 'cli-progress';
import { readConfigFile } from './config-file.ts';
import { trainRun, type TrainRunResult } from '../run/run.ts';
import { trainPopulationRun } from '../run/population-run.ts';
import { applyOverrides, isPathModel, parseRunConfig, withModelPath } from '../run/run-config.ts';
import { evalTable } from '../eval/trials.ts';
import type { StepMetrics } from '../train/trainer.ts';

export interface TrainCliOptions {
  out?: string;
  set: string[];
  resume: boolean;
  /** Train this pretrained model (HF directory or .gguf) instead of the config's model. */
  model?: string;
}

export async function runTrainCommand(configPath: string, o: TrainCliOptions): Promise<TrainRunResult | null> {
  const file = readConfigFile(configPath);
  const raw = applyOverrides(o.model !== undefined ? withModelPath(file, o.model) : file, o.set);
  const cfg = parseRunConfig(raw);
  const out = o.out ?? join('runs', basename(configPath, extname(configPath)));
  if (cfg.population) {
    await trainPopulationRun(raw, { out, resume: o.resume, log: console.log });
    return null;
  }
  const total = cfg.trainer.steps;
  const tty = process.stdout.isTTY === true;
  const bar = tty ? new cliProgress.SingleBar({ format: 'training |{bar}| {value}/{total} steps | ETA {eta_formatted} | reward {reward} | by episode {eps} | {tps} tok/s', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  const model = isPathModel(cfg.model) ? `, model ${cfg.model.path}${cfg.model.lora ? ` with LoRA rank ${cfg.model.lora.rank}` : ''}` : '';
  console.log(`agentrl train ${configPath} → ${out} (${cfg.task}${model}, ${total} steps of ${cfg.trainer.batchSize} groups × ${cfg.trainer.groupSize}, η = ${cfg.trainer.maxStaleness})`);
  let started = false;
  const onStep = (m: StepMetrics) => {
    const eps = m.episodeReward.map((x) => x.toFixed(2)).join('/') || '-';
    const tps = m.seconds > 0 ? (m.processedTokens / m.seconds).toFixed(0) : '-';
    if (bar) {
      if (!started) bar.start(total, m.step, { reward: '-', eps: '-', tps: '-' });
      started = true;
      bar.update(m.version + 1 <= total ? m.version + 1 : total, { reward: m.meanReward.toFixed(3), eps, tps });
    } else if (m.step % 10 === 0 || m.version + 1 === total) {
      console.log(`step ${m.version + 1}/${total} reward ${m.meanReward.toFixed(3)} episodes ${eps} loss ${m.loss.toFixed(4)} ${m.seconds.toFixed(2)} s`);
    }
  };
  const result = await trainRun(raw, { out, resume: o.resume, onStep });
  bar?.stop();
  if (result.eval) console.log('\n' + evalTable(result.eval) + '\n');
  if (result.toolEval) console.log(`held-out reward: untrained ${result.toolEval.untrained?.toFixed(3) ?? '-'} → trained ${result.toolEval.trained.toFixed(3)}`);
  if (result.searchEval) console.log('\n' + result.searchEval.markdown + '\n');
  const evaluated = result.eval || result.toolEval || result.searchEval;
  console.log(`wrote ${out}/config.json, metrics.jsonl, checkpoint/${evaluated ? ', eval.json, eval.md' : ''}, plot.svg (${result.wallSeconds.toFixed(0)} s)`);
  return result;
}
