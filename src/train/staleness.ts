/**
 * Bounded staleness for asynchronous RL: AReaL's admission rule and the consumption rule that goes
 * with it. Pure functions; the rollout controller (rollout-controller.ts) owns the state.
 *
 * Units. B is the batch size in *groups* (a group = the `groupSize` rollouts of one task item; the
 * group is the unit of admission and consumption). η = maxStaleness. `version` is the trainer's
 * version counted from the controller's start (version − initialVersion); the trainer consumes one
 * batch per version.
 *
 * Admission rule (AReaL): a new group may be *started* while
 *     accepted + running < (η + version + 1)·B,
 * where `accepted` counts groups that finished and were kept (not filtered, not failed) since the
 * start — consumed or not — and `running` counts admitted groups that have not finished. Dropped
 * groups do not count, so filtering or a failure frees a place and new work is admitted: batches
 * stay full.
 *
 * Why this bounds staleness. Number the kept groups in admission order, N = 1, 2, … . When a group
 * is admitted at version i every earlier kept group is either accepted or running, so its number is
 * at most accepted + running + 1 ≤ (η + i + 1)·B (groups dropped later only lower it). Consumed in
 * admission order, group N goes into batch ⌊(N − 1)/B⌋ ≤ i + η, i.e. it is consumed by the trainer
 * at version i + η at the latest: staleness = consumer version − start version ≤ η. With η = 0 this
 * is the synchronous loop: B groups at version i, consumed by step i.
 *
 * Consuming strictly in admission order makes one long rollout stall the trainer. AReaL-lite instead
 * takes the oldest *finished* groups, which can break the bound (example, B = 1, η = 2: groups a, b,
 * c start at version 0; c finishes and is consumed at 0; d starts at 1, finishes, is consumed at 1;
 * then a and b are both due at version 2 but a batch holds one). So consumption here is earliest-
 * deadline-first with a feasibility check: group g must be consumed by version d_g = start_g + η.
 * Invariant I(k), before the batch of version k is taken: for every d ≥ k, the unconsumed groups
 * (finished and kept, or still running) with deadline ≤ d number at most (d − k + 1)·B — they fit
 * into the batches k…d. Admission preserves I (that is the AReaL inequality above, applied to the
 * newest deadline). A batch preserves I when, for every d, it takes at least
 *     need(d) = unconsumed(deadline ≤ d) − (d − k)·B
 * groups with deadline ≤ d. The B oldest finished groups maximise that count for every d at once,
 * so the controller takes them if they satisfy every need(d) and otherwise waits for more groups to
 * finish. Once the B oldest unconsumed groups have all finished they always qualify, so the wait
 * ends. Out-of-order consumption therefore happens exactly when it cannot cost the bound.
 *
 * Token staleness: trainer version at consumption − the version that sampled the token. Without
 * interruptible generation every token of a group is at most as stale as the group.
 */
import type { TokenSeq } from '../core/types.ts';
import { TokenSource } from '../core/types.ts';

export interface AdmissionCounts {
  /** Finished, kept groups since the start (consumed or not). */
  accepted: number;
  /** Admitted groups not finished yet. */
  running: number;
  /** Trainer version relative to the controller's start (0 at the start). */
  version: number;
}

export interface StalenessLimits {
  /** B: groups per training batch. */
  batchSize: number;
  /** η: maximum staleness; 0 = synchronous. */
  maxStaleness: number;
}

/** How many more groups the staleness rule admits now: (η + version + 1)·B − (accepted + running), ≥ 0. */
export function stalenessCapacity(c: AdmissionCounts, l: StalenessLimits): number {
  return Math.max(0, (l.maxStaleness + c.version + 1) * l.batchSize - (c.accepted + c.running));
}

/**
 * AReaL's full admission capacity when rollouts and groups are the same unit:
 * min(maxConcurrent − running, (η + version + 1)·B − (accepted + running)), ≥ 0.
 */
export function admissionCapacity(c: AdmissionCounts, l: StalenessLimits & { maxConcurrent: number }): number {
  return Math.max(0, Math.min(l.maxConcurrent - c.running, stalenessCapacity(c, l)));
}

/** The batch (0-based, = relative trainer version) that the N-th kept group (1-based) fills when consumed in admission order. */
export function fifoBatchIndex(admissionNumber: number, batchSize: number): number {
  if (admissionNumber < 1) throw new Error(`fifoBatchIndex: admission numbers start at 1, got ${admissionNumber}`);
  return Math.floor((admissionNumber - 1) / batchSize);
}

/** The last trainer version at which a group started at `startVersion` may be consumed. */
export function consumeDeadline(startVersion: number, maxStaleness: number): number {
  return startVersion + maxStaleness;
}

/** One unconsumed group as the consumption rule sees it. */
export interface PendingGroup {
  /** Last trainer version allowed to consume it (start version + η). */
  deadline: number;
  /** Finished and kept (true) or still running (false). Running groups may still be dropped. */
  ready: boolean;
}

/**
 * Pick the batch for trainer version `version` from the unconsumed groups, given in admission order
 * (so deadlines are non-decreasing). Returns the indices (into `pending`) of the B oldest ready groups
 * when taking them keeps every later deadline feasible (see the module comment), or null when the
 * caller must wait for more groups to finish. Needs are capped at B so that a caller that broke the
 * one-batch-per-version assumption still gets a batch once the B oldest groups are ready.
 */
export function pickBatch(pending: readonly PendingGroup[], version: number, batchSize: number): number[] | null {
  const picked: number[] = [];
  for (let i = 0; i < pending.length && picked.length < batchSize; i++) if (pending[i]!.ready) picked.push(i);
  if (picked.length < batchSize) return null;
  // Walk deadlines in increasing order; at each distinct deadline d (and at the end of the list)
  // compare need(d) with how many picked groups have deadline ≤ d.
  let unconsumedUpTo = 0;
  let pickedUpTo = 0;
  let p = 0;
  for (let i = 0; i < pending.length; i++) {
    const d = pending[i]!.deadline;
    unconsumedUpTo++;
    while (p < picked.length && picked[p]! <= i) {
      pickedUpTo++;
      p++;
    }
    const lastOfDeadline = i + 1 === pending.length || pending[i + 1]!.deadline !== d;
    if (!lastOfDeadline) continue;
    const need = Math.min(batchSize, unconsumedUpTo - Math.max(0, d - version) * batchSize);
    if (pickedUpTo < need) return null;
  }
  return picked;
}

/** Counts keyed by an integer (e.g. staleness → number of groups). JSON-safe. */
export type Histogram = Record<number, number>;

export function addToHistogram(h: Histogram, key: number, count = 1): Histogram {
  h[key] = (h[key] ?? 0) + count;
  return h;
}

export function mergeHistograms(into: Histogram, from: Histogram): Histogram {
  for (const [k, v] of Object.entries(from)) addToHistogram(into, Number(k), v);
  return into;
}

/** Mean and max of a histogram's keys weighted by counts (0 and 0 when empty). */
export function histogramStats(h: Histogram): { count: number; mean: number; max: number } {
  let count = 0;
  let sum = 0;
  let max = -Infinity;
  for (const [k, v] of Object.entries(h)) {
    if (v <= 0) continue;
    count += v;
    sum += Number(k) * v;
    max = Math.max(max, Number(k));
  }
  return count > 0 ? { count, mean: sum / count, max } : { count: 0, mean: 0, max: 0 };
}

/**
 * Add the staleness (consumer version − token version) of every policy-sampled token of `seq` to `h`.
 * Tokens with version −1 (prompt, tool, env) are skipped.
 */
export function addTokenStaleness(h: Histogram, seq: TokenSeq, consumerVersion: number): Histogram {
  for (let t = 0; t < seq.ids.length; t++) {
    const v = seq.versions[t]!;
    if (v < 0 || seq.source[t] !== TokenSource.model) continue;
    addToHistogram(h, consumerVersion - v);
  }
  return h;
}
