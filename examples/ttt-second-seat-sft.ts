/**
 * Can the tic-tac-toe policy's model learn the second seat's defence at all, and from how many
 * labelled moves? A diagnostic for issue #21, not a training recipe.
 *
 * It builds the model, tokenizer and first-episode prompt of a run config (by default the committed
 * ttt-cells recipe), then trains it by supervised learning on the perfect player's replies: every
 * position with O to move, the target drawn uniformly from minimax's optimal cells. Every `--every`
 * steps it reports the share of positions where the most likely empty cell is optimal, and the share
 * of games not lost against minimax (random ties) when the model plays O greedily.
 *
 * RL sees the same prompts but learns only from wins, draws and losses; this shows how much direct
 * signal the defence takes at this model size, and which learning rates can learn it at all.
 *
 *   node --import tsx examples/ttt-second-seat-sft.ts --steps 6000 --lr 1e-3
 */
import { Command } from 'commander';
import { readConfigFile } from '../src/cli/config-file.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { trialParts } from '../src/run/run.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { sftLoss } from '../src/train/builtin-trainer.ts';
import { appendCompletion, appendContext, emptySeq, type Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';
import { tttSnapshotPrompt } from '../src/train/population/ttt-snapshot.ts';
import { EMPTY_BOARD, emptyCells, isOver, play, type Board, winner } from '../src/envs/ttt-game.ts';
import { minimaxMoves } from '../src/envs/ttt-opponents.ts';

const o = new Command()
  .option('--config <file>', 'run config whose model, tokenizer and trial prompt are used', 'examples/configs/ttt-cells-meta-rl.yaml')
  .option('--set <key=value>', 'config override (repeatable)', (v: string, p: string[]) => [...p, v], [])
  .option('--lr <x>', 'learning rate (Adam, as the run config otherwise)', Number)
  .option('--steps <n>', 'optimizer steps', Number, 6000)
  .option('--batch <n>', 'labelled moves per step', Number, 64)
  .option('--every <n>', 'report every n steps', Number, 500)
  .option('--games <n>', 'games against minimax per report', Number, 200)
  .option('--seed <n>', 'data and game seed', Number, 7)
  .parse()
  .opts<{ config: string; set: string[]; lr?: number; steps: number; batch: number; every: number; games: number; seed: number }>();

const cfg = parseRunConfig(readConfigFile(o.config, [...o.set, ...(o.lr !== undefined ? [`optimizer.lr=${o.lr}`] : [])]));
if (cfg.task !== 'tictactoe' || cfg.envOptions.observation !== 'token') throw new Error(`--config: needs a tictactoe run with envOptions.observation token, got task ${cfg.task}`);
const parts = trialParts(cfg, defaultBackend(), null);
const { tokenizer: tok, trainer } = parts;
if (!tok) throw new Error('--config: the run has no tokenizer');
const model = trainer.model;
const wordId = (w: string): number => {
  const id = tok.tokenId(w);
  if (id === undefined) throw new Error(`the config's tokenizer has no word '${w}'`);
  return id;
};
const cellIds = Array.from({ length: 9 }, (_, c) => wordId(`c${c + 1}`));
const promptIds = (b: Board) => [...tok.encode(tttSnapshotPrompt({ board: b, toMove: 2 }, cfg.trial, '')), wordId('<action>')];

// Every position with O to move (X has one more mark) and the game not over.
const positions = new Map<string, Board>();
(function walk(b: Board, m: 1 | 2): void {
  if (isOver(b)) return;
  if (m === 2) {
    const key = b.join('');
    if (positions.has(key)) return;
    positions.set(key, b);
  }
  for (const c of emptyCells(b)) walk(play(b, c, m), m === 1 ? 2 : 1);
})(EMPTY_BOARD, 1);
const data = [...positions.values()].map((b) => ({ b, ids: promptIds(b), best: minimaxMoves(b, 2) }));

const cache = model.newKVCache(1);
/** The most likely empty cell (what `--top-k 1` plays). */
function greedyCell(b: Board, ids = promptIds(b)): number {
  const logits = model.prefill(cache, 0, ids);
  return emptyCells(b).reduce((best, c) => (logits[cellIds[c]!]! > logits[cellIds[best]!]! ? c : best));
}
const rng = new Rng(o.seed);
function notLostVsMinimax(): number {
  let notLost = 0;
  for (let g = 0; g < o.games; g++) {
    let b: Board = EMPTY_BOARD;
    for (let m: 1 | 2 = 1; !isOver(b); m = m === 1 ? 2 : 1) {
      const best = minimaxMoves(b, 1);
      b = play(b, m === 1 ? best[rng.int(best.length)]! : greedyCell(b), m);
    }
    if (winner(b) !== 1) notLost++;
  }
  return notLost / o.games;
}
const optimalShare = () => data.filter((d) => d.best.includes(greedyCell(d.b, d.ids))).length / data.length;

const floor = data.reduce((a, d) => a + Math.log(d.best.length), 0) / data.length;
console.log(`${data.length} positions with O to move; lr ${cfg.optimizer.lr}; model ${model.config.nLayer} layers × ${model.config.nEmbd}; loss floor (mean ln |optimal cells|) ${floor.toFixed(3)}\n`);
console.log('| step | labelled moves | train loss | greedy cell optimal | not lost vs minimax as O |\n|---|---|---|---|---|');
const row = (step: number, loss: number) => console.log(`| ${step} | ${step * o.batch} | ${Number.isNaN(loss) ? '–' : loss.toFixed(3)} | ${optimalShare().toFixed(3)} | ${notLostVsMinimax().toFixed(3)} |`);
row(0, NaN);
let lossSum = 0;
for (let step = 1; step <= o.steps; step++) {
  const batch: Sample[] = Array.from({ length: o.batch }, () => {
    const d = data[rng.int(data.length)]!;
    const seq = emptySeq();
    appendContext(seq, d.ids);
    appendCompletion(seq, { ids: [cellIds[d.best[rng.int(d.best.length)]!]!], logprobs: [0], versions: [0] });
    return { seq, reward: 0, keys: {} };
  });
  lossSum += trainer.trainStep(batch, sftLoss).loss;
  if (step % o.every === 0) {
    row(step, lossSum / o.every);
    lossSum = 0;
  }
}
