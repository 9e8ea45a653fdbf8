/**
 * A tic-tac-toe checkpoint evaluated in each seat separately (the env's seat forced to X, then O),
 * sampled at the run's evaluation settings and greedily (top-k 1). Per opponent: the share of
 * first games not lost, and the success by episode (won in some episode ≤ k). `agentrl eval` mixes
 * the seats as the run does; this shows the second seat's defence on its own (issue #21).
 *
 *   node --import tsx examples/ttt-seat-eval.ts --checkpoint runs/ttt-meta/checkpoint --trials 100 --seed 5000
 */
import { Command } from 'commander';
import { loadCheckpointPolicy } from '../src/cli/checkpoint-policy.ts';
import { evalTrialConfig } from '../src/run/run-config.ts';
import { envFactory } from '../src/train/meta-setup.ts';
import { evaluatePolicy, meanSe } from '../src/eval/trials.ts';
import { notLostAt } from '../src/eval/trial-measures.ts';

const o = new Command()
  .requiredOption('--checkpoint <dir>', 'checkpoint written by agentrl train (task tictactoe)')
  .option('--opponents <list>', 'comma-separated opponents', 'minimax,mcts-100,greedy')
  .option('--trials <n>', 'trials per opponent and seat', Number, 100)
  .option('--seed <n>', 'evaluation seed', Number, 1000)
  .parse()
  .opts<{ checkpoint: string; opponents: string; trials: number; seed: number }>();

const p = await loadCheckpointPolicy(o.checkpoint, {
  whyTokenizer: 'the seat evaluation renders prompts with it', maxBatch: 64, seed: 1,
  checkTask: (run) => (run.task === 'tictactoe' ? null : `--checkpoint: a tictactoe run is needed, got task '${run.task}'`),
});
const opponents = o.opponents.split(',').map((x) => x.trim()).filter(Boolean);

console.log(`checkpoint ${o.checkpoint} (step ${p.step}); ${o.trials} trials per opponent and seat, evaluation seed ${o.seed}\n`);
console.log('| sampling | seat | opponent | first game not lost | success by episode |\n|---|---|---|---|---|');
for (const [label, over] of [['as evaluated', {}], ['greedy (top-k 1)', { topK: 1 }]] as const) {
  const trial = evalTrialConfig(p.run, over, 'ttt-seat-eval');
  for (const seat of ['X', 'O'] as const) {
    const r = await evaluatePolicy('policy', p.engine, { opponents, trials: o.trials, seed: o.seed, makeEnv: envFactory(p.run.task, { ...p.run.envOptions, seat }), trial });
    for (const e of r.opponents) console.log(`| ${label} | ${seat} | ${e.opponent} | ${meanSe(notLostAt(r, e.opponent, 0))[0].toFixed(2)} | ${e.episodes.map((x) => x.successRate.toFixed(2)).join(' / ')} |`);
  }
}
