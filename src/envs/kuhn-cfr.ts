/**
 * CFR+ for Kuhn poker (regret matching+, alternating updates, linearly weighted averaging) over the
 * 12 information sets, run until the average policy's exploitability — computed exactly by best
 * response — is below a target. The game value for player 0 is −1/18.
 */
import {
  DEALS, allInfoSets, infoSetKey, isTerminal, payoffFor, playerToAct,
  type DecisionHistory, type KuhnCard, type KuhnPolicy, type KuhnSeat,
} from './kuhn-game.ts';
import { bestResponse, expectedPayoff } from './kuhn-eval.ts';

export const KUHN_GAME_VALUE_P0 = -1 / 18;

export interface CfrOptions {
  /** Stop once exploitability (NashConv / 2) is below this. */
  targetExploitability?: number;
  maxIterations?: number;
  /** Exploitability is measured every this many iterations. */
  checkEvery?: number;
}

export interface CfrSolution {
  /** Probability of BET at each information set key (e.g. `Q:PB`). */
  averagePolicy: Record<string, number>;
  policy: KuhnPolicy;
  iterations: number;
  /** br0 + br1 of the average policy (chips). */
  nashConv: number;
  /** NashConv / 2. */
  exploitability: number;
  /** Expected chips for player 0 when both seats play the average policy. */
  gameValueP0: number;
}

interface Node {
  regret: [number, number]; // [PASS, BET]
  /** Regret increments of the running half-iteration, applied after all deals were traversed. */
  pending: [number, number];
  strategySum: [number, number];
}

export function solveKuhnCfr(opts: CfrOptions = {}): CfrSolution {
  const target = opts.targetExploitability ?? 1e-5;
  const maxIterations = opts.maxIterations ?? 200_000;
  const checkEvery = opts.checkEvery ?? 50;
  const nodes = new Map<string, Node>();
  for (const { key } of allInfoSets()) nodes.set(key, { regret: [0, 0], pending: [0, 0], strategySum: [0, 0] });

  const current = (key: string): [number, number] => {
    const r = nodes.get(key)!.regret;
    const sum = r[0] + r[1];
    return sum > 0 ? [r[0] / sum, r[1] / sum] : [0.5, 0.5];
  };

  // Value for `traverser`; reachSelf/reachOthers include the 1/6 chance factor in reachOthers.
  const traverse = (cards: readonly [KuhnCard, KuhnCard], history: string, traverser: KuhnSeat, reachSelf: number, reachOthers: number, weight: number): number => {
    if (isTerminal(history)) return payoffFor(traverser, cards, history);
    const h = history as DecisionHistory;
    const actor = playerToAct(h);
    const key = infoSetKey(cards[actor], h);
    const sigma = current(key);
    if (actor !== traverser) {
      return sigma[0] * traverse(cards, h + 'P', traverser, reachSelf, reachOthers * sigma[0], weight)
        + sigma[1] * traverse(cards, h + 'B', traverser, reachSelf, reachOthers * sigma[1], weight);
    }
    const vPass = traverse(cards, h + 'P', traverser, reachSelf * sigma[0], reachOthers, weight);
    const vBet = traverse(cards, h + 'B', traverser, reachSelf * sigma[1], reachOthers, weight);
    const v = sigma[0] * vPass + sigma[1] * vBet;
    const node = nodes.get(key)!;
    node.pending[0] += reachOthers * (vPass - v);
    node.pending[1] += reachOthers * (vBet - v);
    node.strategySum[0] += weight * reachSelf * sigma[0];
    node.strategySum[1] += weight * reachSelf * sigma[1];
    return v;
  };

  const average = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [key, n] of nodes) {
      const s = n.strategySum[0] + n.strategySum[1];
      out[key] = s > 0 ? n.strategySum[1] / s : 0.5;
    }
    return out;
  };

  let iterations = 0;
  let result = measure(average());
  while (iterations < maxIterations) {
    for (let k = 0; k < checkEvery && iterations < maxIterations; k++) {
      iterations++;
      for (const traverser of [0, 1] as KuhnSeat[]) {
        // Every deal is traversed under the same strategy; regret-matching+ then floors the sums at 0.
        for (const cards of DEALS) traverse(cards, '', traverser, 1, 1 / DEALS.length, iterations);
        for (const node of nodes.values()) {
          node.regret[0] = Math.max(0, node.regret[0] + node.pending[0]);
          node.regret[1] = Math.max(0, node.regret[1] + node.pending[1]);
          node.pending[0] = 0;
          node.pending[1] = 0;
        }
      }
    }
    result = measure(average());
    if (result.exploitability < target) break;
  }
  return { ...result, iterations };
}

function measure(averagePolicy: Record<string, number>): Omit<CfrSolution, 'iterations'> {
  const policy: KuhnPolicy = (card, history) => averagePolicy[infoSetKey(card, history)]!;
  const br0 = bestResponse(policy, 0).value;
  const br1 = bestResponse(policy, 1).value;
  const nashConv = br0 + br1;
  return { averagePolicy, policy, nashConv, exploitability: nashConv / 2, gameValueP0: expectedPayoff(policy, policy, 0) };
}

let cached: CfrSolution | null = null;

/** The default solution (exploitability < 1e-5, about 8k iterations, ~0.2 s), computed once per process. */
export function kuhnCfrSolution(): CfrSolution {
  cached ??= solveKuhnCfr();
  return cached;
}
