/**
 * A tiny adaptation environment: a K-armed bandit (arms named A, B, C …) with one pull per episode.
 * The paying arm is drawn uniformly from the reset seed and kept by `restart()`, so within a
 * multi-episode trial it is fixed and across trials it is uniform. Payoffs are deterministic:
 * 1 for the paying arm, 0 otherwise. An unparseable answer ends the episode with reward 0
 * (`valid: false`).
 *
 * Closed-form ceilings for a trial of N episodes (see `banditCeilings`):
 * - adaptive (try an untried arm until the paying one is found, then repeat it):
 *     expected reward in episode j (0-based) = min(j+1, K)/K; success by episode k = min(k+1, K)/K.
 * - memoryless (the same action distribution every episode — a policy that does not read earlier
 *   episodes; every episode shows it the same observation): expected reward 1/K per episode, and
 *   success by episode k at most 1 − (1 − 1/K)^(k+1) (uniform random pulls maximise it).
 * - open-loop (a fixed arm sequence chosen in advance): reward 1/K per episode; success by episode k
 *   min(k+1, K)/K — only reading the feedback raises the reward after the first episode.
 */
import type { StepResult, TextEnv } from './types.ts';
import { assertSeed, mixSeed, mulberry32, randInt } from './rng.ts';
import { extractActionText, vocabularyOf } from './text.ts';

export interface BanditEnvOptions {
  /** Number of arms, 2..26. Default 3. */
  arms?: number;
}

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

export class BanditEnv implements TextEnv {
  readonly name = 'bandit';
  readonly arms: readonly string[];
  private seed: number | null = null;
  private best = 0;
  private pulled: number | null = null;
  private finished = false;
  private invalid = false;
  private returnSum = 0;

  constructor(opts: BanditEnvOptions = {}) {
    const k = opts.arms ?? 3;
    if (!Number.isInteger(k) || k < 2 || k > LETTERS.length) throw new Error(`bandit: arms must be an integer in 2..26, got ${opts.arms}`);
    this.arms = [...LETTERS.slice(0, k)];
  }

  /** The paying arm's index (for oracles and tests; never shown to the agent). */
  get bestArm(): number { return this.best; }
  get done(): boolean { return this.finished; }

  rules(): string {
    return [
      `a bandit with ${this.arms.length} arms ${this.arms.join(' ')} . one arm pays 1 and the others pay 0 .`,
      'you pull one arm per episode . the paying arm is the same in every episode of a trial .',
      `answer with <action> ${this.arms[0]} </action>`,
    ].join(' ');
  }

  reset(seed: number): string {
    assertSeed(seed, 'bandit');
    this.seed = seed;
    this.best = randInt(mulberry32(mixSeed(seed, 1)), this.arms.length);
    return this.start();
  }

  restart(): string {
    if (this.seed === null) throw new Error('bandit.restart: call reset(seed) first');
    return this.start();
  }

  private start(): string {
    this.pulled = null;
    this.finished = false;
    this.invalid = false;
    this.returnSum = 0;
    return this.observe();
  }

  observe(): string {
    if (this.seed === null) throw new Error('bandit.observe: call reset(seed) first');
    const head = `choose one arm | arms ${this.arms.join(' ')}`;
    if (!this.finished) return head;
    if (this.pulled === null) return `${head} | invalid answer | reward 0`;
    return `${head} | you pulled ${this.arms[this.pulled]} | reward ${this.returnSum}`;
  }

  legalActions(): string[] {
    return this.finished || this.seed === null ? [] : [...this.arms];
  }

  step(actionText: string): StepResult {
    if (this.seed === null || this.finished) {
      return { reward: 0, done: true, valid: false, observation: '', info: { error: this.seed === null ? 'call reset(seed) first' : 'episode is over' } };
    }
    this.finished = true;
    const arm = parseBanditAction(actionText, this.arms.length);
    if (arm === null) {
      this.invalid = true;
      return { reward: 0, done: true, valid: false, observation: '', info: { reason: 'unparseable action' } };
    }
    this.pulled = arm;
    const reward = arm === this.best ? 1 : 0;
    this.returnSum = reward;
    return { reward, done: true, valid: true, observation: '', info: { arm: this.arms[arm] } };
  }

  won(): boolean { return this.finished && !this.invalid && this.returnSum > 0; }
  episodeReturn(): number { return this.returnSum; }

  vocabulary(): string[] {
    return vocabularyOf([this.rules()], ['choose', 'one', 'arm', 'arms', '|', ...this.arms, 'invalid', 'answer', 'you', 'pulled', 'reward', '0', '1']);
  }
}

/** Arm index from `<action>B</action>` or a bare letter (case-insensitive); null otherwise. */
export function parseBanditAction(raw: unknown, arms: number): number | null {
  const text = extractActionText(raw);
  if (text === null) return null;
  const word = text.replace(/\.$/, '').trim().toUpperCase();
  if (word.length !== 1) return null;
  const i = LETTERS.indexOf(word);
  return i >= 0 && i < arms ? i : null;
}

export interface BanditPolicyCeiling {
  /** Expected reward in each episode 0..N−1. */
  rewardPerEpisode: number[];
  /** Expected total reward over the trial. */
  totalReward: number;
  /** Probability of having won in some episode ≤ k, for k = 0..N−1. */
  successByEpisode: number[];
}

export interface BanditCeilings {
  adaptive: BanditPolicyCeiling;
  memoryless: BanditPolicyCeiling;
  openLoop: BanditPolicyCeiling;
}

/** Closed-form ceilings of a K-armed, N-episode trial (see the module comment). */
export function banditCeilings(arms: number, episodes: number): BanditCeilings {
  if (!Number.isInteger(arms) || arms < 1 || !Number.isInteger(episodes) || episodes < 1) throw new Error('banditCeilings: arms and episodes must be positive integers');
  const ks = Array.from({ length: episodes }, (_, k) => k);
  const make = (reward: (k: number) => number, success: (k: number) => number): BanditPolicyCeiling => {
    const rewardPerEpisode = ks.map(reward);
    return { rewardPerEpisode, totalReward: rewardPerEpisode.reduce((a, b) => a + b, 0), successByEpisode: ks.map(success) };
  };
  const found = (k: number) => Math.min(k + 1, arms) / arms;
  return {
    adaptive: make(found, found),
    memoryless: make(() => 1 / arms, (k) => 1 - Math.pow(1 - 1 / arms, k + 1)),
    openLoop: make(() => 1 / arms, found),
  };
}
