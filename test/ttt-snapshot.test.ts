import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTrial, type TrialConfig, TrialConfigSchema } from '../src/agents/trial.ts';
import { cellWord, TicTacToeEnv } from '../src/envs/tictactoe.ts';
import { mulberry32 } from '../src/envs/rng.ts';
import { boardKey, cellToAction, EMPTY_BOARD, emptyCells, play, type Board, type Mark } from '../src/envs/ttt-game.ts';
import type { TttOpponent, TttPlacement, TttState } from '../src/envs/ttt-opponents.ts';
import type { InferenceEngine, SampledCompletion, Tokenizer } from '../src/engine/types.ts';
import type { Transformer } from '../src/engine/model.ts';
import {
  loadPopulation, Population, savePopulation, SNAPSHOT_ADAPTERS, tttOwnMoves, TttSnapshotOpponent, tttSnapshotAdapter,
  type PopulationConfigInput,
} from '../src/train/population.ts';
import { populationConfigOf } from '../src/run/population-run.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { fastBackend } from './helpers/backends.ts';

const backend = fastBackend();
const ENV_OPTIONS = { seat: 'random', observation: 'token', rewardScale: 1 } as const;
const TRIAL = { episodes: 2, contextMode: 'history_only', reflect: false, maxTurns: 8, rules: 'none', historyWindow: 0, obsWindow: 0, temperature: 1 } as const;

function tinyConfig(over: Partial<PopulationConfigInput> = {}): PopulationConfigInput {
  return {
    env: 'tictactoe',
    envOptions: { ...ENV_OPTIONS },
    size: 1,
    seed: 3,
    model: { contextLength: 96, nLayer: 1, nHead: 2, nEmbd: 16 },
    optimizer: { weightDecay: 0 },
    opponents: [{ name: 'center-first' }, { name: 'random' }],
    meta: { groups: 2, groupSize: 2, trial: TRIAL, credit: { kind: 'mage', invalidCoef: 2 } },
    league: { snapshotEvery: 1, maxSnapshots: 4 },
    pbt: { exploitEvery: 0 },
    ...over,
  };
}

/** One tiny model and its tokenizer (the population's, built from the token env's vocabulary). */
const pop = Population.create(tinyConfig(), { backend });
const model = pop.members[0]!.trainer.model;
const tok = pop.tokenizer;
const unk = tok.tokenId('<unk>')!;

function snapshot(trial: Partial<TrialConfig> = {}, temperature = 1, truncate: { topK?: number; topP?: number } = {}): TttSnapshotOpponent {
  const cfg = TrialConfigSchema.parse({ ...TRIAL, ...trial });
  return new TttSnapshotOpponent('m0@1', model, tok, { prompt: cfg, rulesText: new TicTacToeEnv({ ...ENV_OPTIONS }).rules(), temperature, ...truncate });
}

/** A state from placements in order. */
function stateOf(moves: TttPlacement[], toMove: Mark): TttState {
  let board: Board = EMPTY_BOARD;
  for (const m of moves) board = play(board, m.cell, m.mark);
  return { board, toMove, moves };
}

function completion(t: Tokenizer, text: string): SampledCompletion {
  const ids = t.encode(text);
  return { ids, logprobs: ids.map(() => 0), versions: ids.map(() => 0), text: t.decode(ids), finishReason: 'stop', temperature: 1 };
}

/** A scripted tic-tac-toe player answering each board from a table. */
function replayPlayer(cellByBoard: Map<string, number>): TttOpponent {
  const move = (s: TttState) => {
    const c = cellByBoard.get(boardKey(s.board));
    if (c === undefined) throw new Error(`replay: no move for ${boardKey(s.board)}`);
    return c;
  };
  return { name: 'replay', move, act: (s) => cellToAction(move(s)) };
}

afterEach(() => vi.restoreAllMocks());

describe('tic-tac-toe snapshot opponent: what it reads', () => {
  it('feeds the model, token for token, the prompt runTrial gives the agent in its seat (incl. its own earlier moves and runTrial truncation)', async () => {
    const configs: Partial<TrialConfig>[] = [
      { rules: 'none', historyWindow: 0, obsWindow: 0, episodes: 3, triedActions: true, pastEpisodes: 'outcome' }, // as the shipped ttt configs
      { rules: 'none', historyWindow: 7, obsWindow: 2, contextMode: 'history_and_reflection' },
      { rules: 'none', historyWindow: 2, obsWindow: 1, contextMode: 'none', episodes: 3 },
      { rules: 'full', historyWindow: 3, obsWindow: 1 }, // rules + moves exceed the 96-token context: left-truncated
    ];
    const openId = tok.tokenId('<action>')!;
    const prefill = vi.spyOn(model, 'prefill');
    let compared = 0, truncated = 0, withOwnMoves = 0;
    for (const trialIn of configs) {
      const trial = TrialConfigSchema.parse({ ...TRIAL, ...trialIn });
      for (const snapSeat of ['X', 'O'] as const) {
        for (let game = 0; game < 4; game++) {
          // Game B: the snapshot (a fresh one: no memo) plays `snapSeat` in TicTacToeEnv against random legal moves.
          const snap = snapshot(trialIn);
          const move = vi.spyOn(snap, 'move');
          prefill.mockClear();
          const envB = new TicTacToeEnv({ ...ENV_OPTIONS, seat: snapSeat === 'X' ? 'O' : 'X', opponent: snap });
          envB.reset(game);
          const rng = mulberry32(100 + game);
          const agentCells = new Map<string, number>();
          while (!envB.done) {
            const free = emptyCells(envB.cells);
            const c = free[Math.floor(rng() * free.length)]!;
            agentCells.set(boardKey(envB.cells), c);
            envB.step(`<action> ${cellWord(c)} </action>`);
          }
          const snapStates = move.mock.calls.map((c) => c[0]);
          const snapCells = new Map(snapStates.map((s, i) => [boardKey(s.board), move.mock.results[i]!.value as number]));
          expect(prefill.mock.calls.length).toBe(snapStates.length);

          // Game A: the agent plays the snapshot's seat and moves; its opponent replays game B's agent.
          const envA = new TicTacToeEnv({ ...ENV_OPTIONS, seat: snapSeat, opponent: replayPlayer(agentCells) });
          const prompts: { ids: number[]; board: string }[] = [];
          const engine: InferenceEngine = {
            tokenizer: tok,
            contextLength: model.config.contextLength,
            version: () => 0,
            async generate(ids): Promise<SampledCompletion> {
              prompts.push({ ids: [...ids], board: boardKey(envA.cells) });
              return completion(tok, `<action> ${cellWord(snapCells.get(boardKey(envA.cells))!)} </action>`);
            },
          };
          await runTrial(envA, engine, trial, { seed: game, groupId: 'g', opponent: 'replay' });
          // The first episode's prompts, position by position, against what the snapshot fed its model.
          const firstEpisode = prompts.slice(0, snapStates.length);
          expect(firstEpisode.map((p) => p.board)).toEqual(snapStates.map((s) => boardKey(s.board)));
          firstEpisode.forEach((p, i) => {
            expect(prefill.mock.calls[i]![2]).toEqual([...p.ids, openId]);
            expect(p.ids).not.toContain(unk); // every word known: equal ids mean equal text
            const full = tok.encode(snap.promptFor(snapStates[i]!));
            if (full.length > p.ids.length) truncated++;
            if (tttOwnMoves(snapStates[i]!).length > 0 && trial.historyWindow > 0) {
              expect(tok.decode(p.ids)).toMatch(/-> c\d/);
              withOwnMoves++;
            }
            compared++;
          });
        }
      }
    }
    expect(compared).toBeGreaterThan(60);
    expect(truncated).toBeGreaterThan(10);
    expect(withOwnMoves).toBeGreaterThan(20);
  });

  it("rebuilds its own moves from the env's placements, also after the agent forfeits a move", () => {
    const snap = snapshot({ historyWindow: 7, obsWindow: 7 });
    const move = vi.spyOn(snap, 'move');
    const env = new TicTacToeEnv({ seat: 'X', observation: 'token', opponent: snap });
    env.reset(0);
    env.step('<action> c5 </action>');
    const o1 = move.mock.results[0]!.value as number;
    env.step(`<action> c5 </action>`); // taken: forfeited, O moves again
    const o2 = move.mock.results[1]!.value as number;
    const s = move.mock.calls[1]![0];
    expect(s.moves).toEqual([{ cell: 4, mark: 1 }, { cell: o1, mark: 2 }]);
    expect(tttOwnMoves(s)).toEqual([{ obs: 'c1_no c2_no c3_no c4_no c5_op c6_no c7_no c8_no c9_no', action: cellWord(o1) }]);
    // O has two marks and X one: the game goes on, and O's next prompt lists both of its moves.
    expect(env.done).toBe(false);
    env.step(`<action> ${cellWord(emptyCells(env.cells)[0]!)} </action>`);
    const s3 = move.mock.calls[2]![0];
    expect(tttOwnMoves(s3).map((m) => m.action)).toEqual([cellWord(o1), cellWord(o2)]);
    expect(snap.promptFor(s3)).toContain(`-> ${cellWord(o1)} ; `);
    // Without the placements it cannot rebuild them (with historyWindow 0 it does not need them).
    expect(() => snap.promptFor({ board: s.board, toMove: 2 })).toThrow(/state\.moves.*historyWindow/);
    const hand = stateOf([{ cell: 4, mark: 1 }, { cell: 0, mark: 2 }, { cell: 8, mark: 1 }], 2);
    expect(snapshot().promptFor({ board: hand.board, toMove: 2 })).toBe('| trial 1 of 2 | now moves none | c1_me c2_no c3_no c4_no c5_op c6_no c7_no c8_no c9_op ->');
    expect(snapshot({ historyWindow: 7, obsWindow: 1, rules: 'full' }).promptFor(hand)).toBe(`${new TicTacToeEnv({ ...ENV_OPTIONS }).rules()} | trial 1 of 2 | now moves c1_no c2_no c3_no c4_no c5_op c6_no c7_no c8_no c9_no -> c1 | c1_me c2_no c3_no c4_no c5_op c6_no c7_no c8_no c9_op ->`);
    expect(() => snap.promptFor({ board: s.board, toMove: 2, moves: [{ cell: 0, mark: 1 }] })).toThrow(/placements in state\.moves give board/);
  });
});

describe('tic-tac-toe snapshot opponent: how it moves', () => {
  /** The hand-computed distribution: softmax(logit / T) over the empty cells' words after the snapshot's input. */
  function handSoftmax(m: Transformer, ids: number[], board: Board, temperature: number): number[] {
    const logits = m.prefill(m.newKVCache(1), 0, ids);
    const free = emptyCells(board);
    const z = free.map((c) => logits[tok.tokenId(`c${c + 1}`)!]! / temperature);
    const e = z.map((v) => Math.exp(v - Math.max(...z)));
    const sum = e.reduce((a, v) => a + v, 0);
    const p = new Array<number>(9).fill(0);
    free.forEach((c, i) => (p[c] = e[i]! / sum));
    return p;
  }

  const states = [
    stateOf([], 1),
    stateOf([{ cell: 4, mark: 1 }], 2),
    stateOf([{ cell: 0, mark: 1 }, { cell: 4, mark: 2 }, { cell: 8, mark: 1 }], 2),
    stateOf([{ cell: 4, mark: 1 }, { cell: 0, mark: 2 }, { cell: 2, mark: 1 }, { cell: 6, mark: 2 }, { cell: 3, mark: 1 }, { cell: 5, mark: 2 }], 1),
  ];

  it('is the tempered softmax over the empty cells only, and the temperature matters', () => {
    const sharp = snapshot({}, 0.25), warm = snapshot({}, 1), hot = snapshot({}, 4);
    let differs = 0;
    for (const s of states) {
      const ids = warm.inputIds(s);
      for (const [opp, t] of [[sharp, 0.25], [warm, 1], [hot, 4]] as const) {
        const p = Array.from(opp.cellProbabilities(s));
        const hand = handSoftmax(model, ids, s.board, t);
        p.forEach((v, c) => expect(v).toBeCloseTo(hand[c]!, 6));
        for (let c = 0; c < 9; c++) if (s.board[c] !== 0) expect(p[c]).toBe(0);
        expect(p.reduce((a, v) => a + v, 0)).toBeCloseTo(1, 9);
      }
      // Lower temperature concentrates the mass on the argmax cell.
      const maxOf = (o: TttSnapshotOpponent) => Math.max(...o.cellProbabilities(s));
      if (emptyCells(s.board).length > 1) {
        expect(maxOf(sharp)).toBeGreaterThan(maxOf(warm));
        expect(maxOf(warm)).toBeGreaterThan(maxOf(hot));
        differs++;
      }
    }
    expect(differs).toBe(states.length);
  });

  it("honours the agent's top-k / top-p: the hand softmax cut to its most likely cells and renormalised", () => {
    for (const s of states.slice(0, 3)) {
      const hand = handSoftmax(model, snapshot().inputIds(s), s.board, 0.7);
      const order = [...hand.keys()].filter((c) => hand[c]! > 0).sort((a, b) => hand[b]! - hand[a]!);
      // top-k 1: all mass on the most likely empty cell.
      const greedy = Array.from(snapshot({}, 0.7, { topK: 1 }).cellProbabilities(s));
      expect(greedy[order[0]!]).toBe(1);
      expect(greedy.filter((v) => v > 0)).toHaveLength(1);
      // top-k 3 with top-p 0.999 (nothing more cut by top-p unless 3 cells hold that mass): the 3 best, renormalised.
      const three = Array.from(snapshot({}, 0.7, { topK: 3, topP: 0.999 }).cellProbabilities(s));
      const mass = order.slice(0, 3).reduce((a, c) => a + hand[c]!, 0);
      for (const c of order.slice(0, 3)) expect(three[c]).toBeCloseTo(hand[c]! / mass, 6);
      for (const c of order.slice(3)) expect(three[c]).toBe(0);
    }
    expect(() => snapshot({}, 1, { topK: 1.5 })).toThrow(/topK must be an integer/);
    expect(() => snapshot({}, 1, { topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    // The league adapter passes the trial's settings on.
    const a = tttSnapshotAdapter({ ...ENV_OPTIONS }, TrialConfigSchema.parse({ ...TRIAL, topK: 1 }));
    const opp = a.makeOpponent({ name: 'm0@3', model, tokenizer: tok }) as TttSnapshotOpponent;
    for (const s of states.slice(0, 3)) expect(Math.max(...opp.cellProbabilities(s))).toBe(1);
  });

  it('draws one rng number per move (inverse CDF over cells 0..8), never a taken cell, and memoises per position', () => {
    const opp = snapshot();
    const prefill = vi.spyOn(model, 'prefill');
    for (const s of states) {
      const p = opp.cellProbabilities(s);
      const ref = mulberry32(7);
      let calls = 0;
      const rng = mulberry32(7);
      const counted = () => (calls++, rng());
      for (let i = 0; i < 200; i++) {
        const c = opp.move(s, counted);
        expect(calls).toBe(i + 1);
        const u = ref();
        let acc = 0, expected = -1;
        for (let k = 0; k < 9 && expected < 0; k++) if (p[k]! > 0 && u < (acc += p[k]!)) expected = k;
        expect(c).toBe(expected);
        expect(s.board[c]).toBe(0);
      }
      expect(opp.move(s, () => 0)).toBe(emptyCells(s.board).find((k) => p[k]! > 0));
      expect(opp.act(s, () => 0)).toBe(cellToAction(opp.move(s, () => 0)));
    }
    // One prefill per position, however often it is asked.
    expect(prefill.mock.calls.length).toBe(states.length);
    expect(opp.memoSize).toBe(states.length);
    expect(() => opp.move(stateOf([0, 3, 1, 4, 2].map((cell, i) => ({ cell, mark: (i % 2 ? 2 : 1) as Mark })), 2), Math.random)).toThrow(/finished board/);
  });
});

describe('tic-tac-toe snapshots in the league', () => {
  it('the adapter parses envOptions with the tictactoe schema and refuses the text observation', () => {
    const trial = TrialConfigSchema.parse(TRIAL);
    expect(SNAPSHOT_ADAPTERS.tictactoe).toBe(tttSnapshotAdapter);
    expect(() => tttSnapshotAdapter({ ...ENV_OPTIONS, opponent: 'random' }, trial)).toThrow(/invalid tictactoe envOptions.*opponent is chosen by the league/);
    expect(() => tttSnapshotAdapter({ ...ENV_OPTIONS, seats: 'X' }, trial)).toThrow(/invalid tictactoe envOptions/);
    expect(() => tttSnapshotAdapter({ seat: 'random' }, trial)).toThrow(/envOptions\.observation 'token' \(got 'text'/);
    expect(() => tttSnapshotAdapter({ observation: 'text' }, trial)).toThrow(/envOptions\.observation/);
    expect(() => new TttSnapshotOpponent('x', model, tok, { prompt: trial, rulesText: '', observation: 'text' })).toThrow(/envOptions\.observation/);
    expect(() => Population.create(tinyConfig({ envOptions: { seat: 'random' } }), { backend })).toThrow(/observation 'token'.*snapshotEvery to 0/);
    // The scripted pool alone still trains on the text observation.
    expect(() => Population.create(tinyConfig({ envOptions: { seat: 'random' }, league: { snapshotEvery: 0 } }), { backend })).not.toThrow();
    // An env built by the adapter plays the snapshot to the end.
    const a = tttSnapshotAdapter({ ...ENV_OPTIONS }, trial);
    const opp = a.makeOpponent({ name: 'm0@3', model, tokenizer: tok });
    expect(opp).toBeInstanceOf(TttSnapshotOpponent);
    const env = a.makeEnv(opp) as TicTacToeEnv;
    expect(env.opponentName).toBe('m0@3');
    env.reset(5);
    while (!env.done) env.step(`<action> ${cellWord(emptyCells(env.cells)[0]!)} </action>`);
    expect(['win', 'loss', 'draw']).toContain(env.outcome);
  });

  it('a `task: tictactoe` population trains against its snapshots and resumes them from a checkpoint', async () => {
    const run = parseRunConfig({
      task: 'tictactoe',
      envOptions: ENV_OPTIONS,
      opponents: [{ name: 'center-first', weight: 0.001 }],
      trial: { ...TRIAL, episodes: 1, maxTurns: 5 },
      model: { contextLength: 64, nLayer: 1, nHead: 2, nEmbd: 16 },
      optimizer: { weightDecay: 0 },
      seed: 11,
      trainer: { steps: 3, batchSize: 2, groupSize: 2, maxStaleness: 0, credit: { kind: 'mage', invalidCoef: 2 } },
      population: { size: 2, league: { mode: 'fixed', snapshotEvery: 1, maxSnapshots: 4 }, pbt: { exploitEvery: 0 } },
    });
    const cfg = populationConfigOf(run);
    const a = Population.create(cfg, { backend });
    const moves = vi.spyOn(TttSnapshotOpponent.prototype, 'move');
    const r1 = await a.runRound();
    expect(r1.members.flatMap((m) => Object.keys(m.opponents))).toEqual(['center-first', 'center-first']);
    expect(r1.snapshotsAdded).toEqual(['m0@1', 'm1@1']);
    expect(moves).not.toHaveBeenCalled();
    const r2 = await a.runRound();
    // With the scripted opponent at weight 0.001, round 2 is (almost surely) all snapshot games.
    const faced = r2.members.flatMap((m) => Object.entries(m.opponents));
    expect(faced.filter(([o]) => /^m[01]@1$/.test(o)).reduce((n, [, s]) => n + s.trials, 0)).toBeGreaterThanOrEqual(3);
    expect(moves.mock.calls.length).toBeGreaterThan(0);
    for (const m of r2.members) for (const [o, s] of Object.entries(m.opponents)) expect(a.league.winRates.games(m.member, o)).toBeGreaterThanOrEqual(s.trials);
    expect(a.league.snapshots.map((s) => s.name)).toEqual(['m0@1', 'm1@1', 'm0@2', 'm1@2']);

    const dir = join(mkdtempSync(join(tmpdir(), 'agentrl-ttt-pop-')), 'pop');
    await savePopulation(a, dir);
    const b = await loadPopulation(dir, { backend });
    expect(b.league.snapshots.map((s) => s.name)).toEqual(a.league.snapshots.map((s) => s.name));
    b.league.snapshots.forEach((s, i) => {
      expect(s.opponent).toBeInstanceOf(TttSnapshotOpponent);
      expect(Array.from(s.params)).toEqual(Array.from(a.league.snapshots[i]!.params));
    });
    // The resumed population plays the same snapshot games as the uninterrupted one.
    const [ra, rb] = [await a.runRound(), await b.runRound()];
    expect(rb.members.map((m) => m.opponents)).toEqual(ra.members.map((m) => m.opponents));
    expect(rb.members.map((m) => m.metrics.meanReward)).toEqual(ra.members.map((m) => m.metrics.meanReward));
    expect(Object.keys(ra.members[0]!.opponents).some((o) => o.includes('@'))).toBe(true);
    expect(b.league.winRates.toJSON()).toEqual(a.league.winRates.toJSON());
  }, 30_000);
});
