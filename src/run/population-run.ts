/**
 * `agentrl train` for configs with a `population` section: N learners trained round-robin against a
 * league (scripted opponents plus frozen snapshots), with PBT — each learner's iteration is one step
 * of the training loop (src/train/population.ts). The run directory holds the resolved config,
 * metrics.jsonl (one line per member iteration), population/ (resumable state) and eval.json
 * (every member against the evaluation opponents).
 */
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluatePolicy, evalTable, type EvalReport } from '../eval/trials.ts';
import { envFactory } from '../train/meta-setup.ts';
import { loadPopulation, Population, type PopulationConfigInput } from '../train/population.ts';
import { builtinModelOf, parseRunConfig, type RunConfig } from './run-config.ts';
import { metricsLine } from './run.ts';

/** The population config a run config describes: rounds = trainer.steps, one iteration per member per round. */
export function populationConfigOf(cfg: RunConfig): PopulationConfigInput {
  const p = cfg.population!;
  const t = cfg.trainer;
  if (t.maxStaleness !== 0) throw new Error('population training runs synchronously (trainer.maxStaleness 0): each member trains one step per round');
  return {
    env: cfg.task, envOptions: cfg.envOptions, size: p.size, seed: cfg.seed, model: builtinModelOf(cfg), optimizer: cfg.optimizer,
    opponents: cfg.opponents,
    meta: { groups: t.batchSize, groupSize: t.groupSize, trial: cfg.trial, credit: t.credit, advantage: t.advantage, loss: t.loss, minibatches: t.minibatches },
    hyper: p.hyper, league: p.league, pbt: p.pbt, maxBatch: cfg.maxBatch,
  };
}

export async function trainPopulationRun(raw: unknown, o: { out: string; resume?: boolean; log?: (line: string) => void }): Promise<{ reports: EvalReport[] }> {
  const cfg = parseRunConfig(raw);
  if (!cfg.population) throw new Error('trainPopulationRun: the config has no population section');
  const log = o.log ?? (() => {});
  mkdirSync(o.out, { recursive: true });
  const stateDir = join(o.out, 'population');
  const metricsPath = join(o.out, 'metrics.jsonl');
  let pop: Population;
  if (o.resume && existsSync(join(stateDir, 'population.json'))) {
    pop = await loadPopulation(stateDir);
    log(`resumed population at round ${pop.round}`);
  } else {
    writeFileSync(join(o.out, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    writeFileSync(metricsPath, '');
    pop = Population.create(populationConfigOf(cfg));
  }
  while (pop.round < cfg.trainer.steps) {
    const r = await pop.runRound();
    for (const m of r.members) appendFileSync(metricsPath, JSON.stringify({ round: r.round, member: m.member, hyper: m.hyper, opponents: m.opponents, ...metricsLine(m.metrics) }) + '\n');
    log(`round ${r.round}/${cfg.trainer.steps}: ${r.members.map((m) => `${m.member} ${m.metrics.meanReward.toFixed(3)}`).join(', ')}${r.snapshotsAdded.length ? `; snapshots ${r.snapshotsAdded.join(', ')}` : ''}${r.exploits.length ? `; exploit ${r.exploits.map((e) => `${e.target}←${e.source}`).join(', ')}` : ''}`);
    if ((cfg.checkpointEvery > 0 && r.round % cfg.checkpointEvery === 0) || r.round === cfg.trainer.steps) await pop.save(stateDir);
  }
  const reports: EvalReport[] = [];
  if (cfg.eval.trials > 0) {
    const makeEnv = envFactory(cfg.task, cfg.envOptions);
    for (const m of pop.members) {
      reports.push(await evaluatePolicy(m.id, m.engine, { opponents: cfg.eval.opponents ?? cfg.opponents.map((x) => x.name), trials: cfg.eval.trials, seed: cfg.eval.seed, makeEnv, trial: { ...cfg.trial, ...cfg.eval.trial } }));
    }
    writeFileSync(join(o.out, 'eval.json'), JSON.stringify({ config: cfg, reports }, null, 2) + '\n');
    writeFileSync(join(o.out, 'eval.md'), `# ${cfg.name ?? cfg.task}: population evaluation\n\n${evalTable(reports)}\n`);
  }
  return { reports };
}
