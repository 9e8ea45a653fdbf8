/**
 * What the agent gateway remembers: for each rollout id, every model call made under it (prompt ids
 * as rendered, completion ids, behaviour logprobs, versions and masks exactly as sampled), until the
 * agent reports its reward. Then the calls become one `Trajectory`: each call is one `Sample`
 * (context = the prompt tokens, trained = the completion tokens, `step.kind` 'turn'), and the
 * reported reward is the trajectory's reward and every sample's (outcome credit).
 *
 * Nothing here re-tokenizes text: the trajectory is built from the ids the engine saw and returned.
 */
import { appendCompletion, appendContext, emptySeq, type Sample, type Trajectory } from '../core/types.ts';
import { OpenAIError } from './openai-shapes.ts';

/** One model call as the engine ran it. */
export interface RecordedCall {
  endpoint: 'chat.completions' | 'completions';
  /** The prompt as token ids (the rendered chat, or the completions prompt). */
  promptIds: number[];
  ids: number[];
  logprobs: number[];
  versions: number[];
  /** Per completion token: the top-k / top-p kept set it was sampled from, or null (see SampledCompletion.masks). */
  masks?: (Uint8Array | null)[];
  temperature: number;
  finishReason: 'stop' | 'length' | 'tool_calls';
  /** The text returned to the client (content, or the raw text when tool calls were parsed). */
  text: string;
  toolCalls: number;
  /** The output contained `<tool_call>` but could not be parsed (returned as plain content). */
  malformedToolCall?: string;
  /** The response id returned to the client (chatcmpl-…, cmpl-…). */
  responseId: string;
}

export interface RolloutRecord {
  id: string;
  calls: RecordedCall[];
  /** Set by the reward report; the rollout is finished from then on. */
  reward: number | null;
  info: Record<string, unknown>;
  createdAt: number;
  /** Group the trajectory is compared within (the workflow's group id; default the rollout id). */
  groupId: string;
  keys: Record<string, string>;
}

export interface RecorderOptions {
  /** Most rollouts held at once (open or finished but not yet taken); default 10 000. */
  maxRollouts?: number;
  /** Most calls one rollout may record; default 1 000. */
  maxCallsPerRollout?: number;
  /** Called when a rollout's reward is reported (e.g. to write it out); its trajectory is passed. */
  onFinished?: (trajectory: Trajectory, record: RolloutRecord) => void;
  /** Drop a finished rollout once `onFinished` has run (set when nobody will `take` it). */
  dropWhenFinished?: boolean;
}

interface Waiter {
  resolve: (r: RolloutRecord) => void;
  reject: (e: Error) => void;
}

/** Rollout ids are path segments and header values: letters, digits and `._:-`, at most 128. */
export const ROLLOUT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export function checkRolloutId(id: string): string {
  if (!ROLLOUT_ID_PATTERN.test(id)) throw new OpenAIError(400, `rollout id ${JSON.stringify(id.slice(0, 140))} is not valid: use 1–128 letters, digits, '.', '_', ':' or '-'`, 'rollout_id');
  return id;
}

export class RolloutRecorder {
  private readonly rollouts = new Map<string, RolloutRecord>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly maxRollouts: number;
  private readonly maxCalls: number;

  constructor(private readonly opts: RecorderOptions = {}) {
    this.maxRollouts = opts.maxRollouts ?? 10_000;
    this.maxCalls = opts.maxCallsPerRollout ?? 1_000;
  }

  /** Rollouts held (open or finished, not yet taken). */
  get size(): number {
    return this.rollouts.size;
  }

  /** Ids of the rollouts held. */
  ids(): string[] {
    return [...this.rollouts.keys()];
  }

  get(id: string): RolloutRecord | undefined {
    return this.rollouts.get(id);
  }

  /** Start a rollout (the workflow does, to set its group); calls on an unknown id start one themselves. */
  open(id: string, o: { groupId?: string; keys?: Record<string, string> } = {}): RolloutRecord {
    checkRolloutId(id);
    if (this.rollouts.has(id)) throw new OpenAIError(409, `rollout ${id} already exists; rollout ids must be unique`, 'rollout_id');
    if (this.rollouts.size >= this.maxRollouts) {
      throw new OpenAIError(503, `the gateway holds ${this.rollouts.size} rollouts (the limit); report rewards of finished rollouts, or take their trajectories`, null, 'server_error', 'too_many_rollouts', { 'retry-after': '1' });
    }
    const record: RolloutRecord = { id, calls: [], reward: null, info: {}, createdAt: Date.now(), groupId: o.groupId ?? id, keys: o.keys ?? {} };
    this.rollouts.set(id, record);
    return record;
  }

  /** Record a call; a call on a finished rollout is refused (its trajectory is already final). */
  record(id: string, call: RecordedCall): void {
    const r = this.rollouts.get(id) ?? this.open(id);
    if (r.reward !== null) throw new OpenAIError(409, `rollout ${id} is finished (its reward was reported); start a new rollout id for new calls`, 'rollout_id');
    if (r.calls.length >= this.maxCalls) throw new OpenAIError(400, `rollout ${id} already has ${r.calls.length} calls (the limit)`, 'rollout_id');
    r.calls.push(call);
  }

  /** The agent's reward: finishes the rollout. Refused for an unknown id or a second report. */
  setReward(id: string, reward: number, info: Record<string, unknown> = {}): RolloutRecord {
    const r = this.rollouts.get(id);
    if (!r) throw new OpenAIError(404, `no rollout ${id}: it made no call through the gateway (or its trajectory was already taken)`, 'rollout_id');
    if (r.reward !== null) throw new OpenAIError(409, `rollout ${id} already has its reward (${r.reward}); a reward is reported once`, 'rollout_id');
    if (!Number.isFinite(reward)) throw new OpenAIError(400, `reward must be a finite number, got ${reward}`, 'reward');
    r.reward = reward;
    r.info = { ...r.info, ...info };
    const waiters = this.waiters.get(id) ?? [];
    this.waiters.delete(id);
    for (const w of waiters) w.resolve(r);
    if (this.opts.onFinished) {
      try {
        this.opts.onFinished(toTrajectory(r), r);
      } finally {
        if (this.opts.dropWhenFinished) this.rollouts.delete(id);
      }
    }
    return r;
  }

  /** Resolves when the rollout's reward is reported; rejects when `signal` aborts (the rollout is then discarded). */
  waitForReward(id: string, signal?: AbortSignal): Promise<RolloutRecord> {
    const r = this.rollouts.get(id);
    if (r && r.reward !== null) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      const list = this.waiters.get(id) ?? [];
      list.push(w);
      this.waiters.set(id, list);
      signal?.addEventListener('abort', () => {
        this.discard(id);
        reject(signal.reason instanceof Error ? signal.reason : new Error(`rollout ${id} aborted`));
      }, { once: true });
    });
  }

  /** Remove a finished rollout and return its trajectory. */
  take(id: string): Trajectory {
    const r = this.rollouts.get(id);
    if (!r) throw new Error(`RolloutRecorder.take: no rollout ${id}`);
    if (r.reward === null) throw new Error(`RolloutRecorder.take: rollout ${id} has no reward yet`);
    this.rollouts.delete(id);
    return toTrajectory(r);
  }

  /** Forget a rollout (aborted or failed); pending waiters are rejected. */
  discard(id: string): void {
    this.rollouts.delete(id);
    const waiters = this.waiters.get(id) ?? [];
    this.waiters.delete(id);
    for (const w of waiters) w.reject(new Error(`rollout ${id} was discarded`));
  }
}

/**
 * The trajectory of a finished rollout: one sample per call, in call order. Every sample gets the
 * rollout's reward (outcome credit, as the search agent does); `step` records the call index, whether
 * its tool call parsed, and its length, for credit stages and statistics that read them.
 */
export function toTrajectory(r: RolloutRecord): Trajectory {
  if (r.reward === null) throw new Error(`rollout ${r.id} has no reward yet`);
  const reward = r.reward;
  const samples: Sample[] = r.calls.map((c, i) => {
    const seq = emptySeq();
    appendContext(seq, c.promptIds);
    appendCompletion(seq, { ids: c.ids, logprobs: c.logprobs, versions: c.versions, ...(c.masks ? { masks: c.masks } : {}) });
    return {
      seq, reward, keys: { ...r.keys }, temperature: c.temperature,
      step: { kind: 'turn', episode: 0, turn: i, valid: c.malformedToolCall === undefined, length: c.ids.length, lastOfEpisode: i === r.calls.length - 1 },
    };
  });
  return {
    id: r.id, groupId: r.groupId, samples, reward,
    info: {
      ...r.info, calls: r.calls.length,
      finishReasons: r.calls.map((c) => c.finishReason),
      malformedToolCalls: r.calls.filter((c) => c.malformedToolCall !== undefined).length,
    },
  };
}

/**
 * A trajectory as one JSON-safe object (for `--out` JSONL): sampling masks, when any, become the
 * sorted list of the token ids each one kept (`allowedIds`), null where unrestricted.
 */
export function trajectoryToJson(t: Trajectory): Record<string, unknown> {
  return {
    ...t,
    samples: t.samples.map((s) => {
      const { constraintMasks, ...seq } = s.seq;
      const allowedIds = constraintMasks?.map((m) => (m ? [...m.keys()].filter((k) => m[k] === 1) : null));
      return { ...s, seq: { ...seq, ...(allowedIds ? { allowedIds } : {}) } };
    }),
  };
}
