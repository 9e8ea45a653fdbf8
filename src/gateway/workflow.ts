/**
 * Train an OpenAI-API agent unchanged: `gatewayWorkflow(gateway, agent)` is a `RolloutWorkflow`
 * (src/core/workflow.ts) that gives each rollout a fresh rollout id, runs the agent with a base URL
 * and API key that route its calls to that rollout, waits until the agent has finished and its
 * reward is known, and returns the recorded trajectory — for the `Trainer` (src/train/trainer.ts)
 * or a plain `policyStep`.
 *
 *   const gateway = await startGatewayServer({ engine, port: 0 });
 *   const trainer = new Trainer({ engine, trainer, source, config,
 *     workflow: gatewayWorkflow(gateway, async (task, { baseURL, apiKey, signal }) => {
 *       const client = new OpenAI({ baseURL, apiKey });
 *       const r = await client.chat.completions.create({ model: 'any', messages: [...] }, { signal });
 *       return score(task, r.choices[0].message.content);   // or POST {baseURL}/rollouts/{id}/reward
 *     }) });
 *
 * The reward is the number the agent returns, or the one it (or anything else, e.g. a judge)
 * reported with `POST /v1/rollouts/{id}/reward`; exactly one of the two. The engine behind the
 * gateway must be the one the trainer updates, so the recorded versions are the trainer's.
 */
import { randomBytes } from 'node:crypto';
import type { Trajectory } from '../core/types.ts';
import type { RolloutContext, RolloutWorkflow } from '../core/workflow.ts';
import type { GatewayServer } from './server.ts';

/** What the agent is given for one rollout. */
export interface GatewayAgentContext {
  /** OpenAI base URL of this rollout (`<gateway>/rollouts/<id>/v1`): every call made under it is recorded. */
  baseURL: string;
  /** API key to pass to the client: the gateway token when it has one, else a placeholder. */
  apiKey: string;
  rolloutId: string;
  /** Where to POST {"reward": r} instead of returning the reward. */
  rewardURL: string;
  /** Aborted when the trainer drops the rollout; pass it to the client's requests. */
  signal: AbortSignal;
  /** The rollout context the trainer gave the workflow. */
  rollout: RolloutContext;
}

/** An agent: runs one task through the gateway and returns its reward (or reports it over HTTP and returns nothing). */
export type GatewayAgent<Item> = (item: Item, ctx: GatewayAgentContext) => Promise<number | void>;

export interface GatewayWorkflowOptions<Item> {
  /** The gateway token (when the gateway has one): the agent's API key. */
  token?: string;
  /** Sample keys for group statistics (e.g. `{ task: item.id }`); default none. */
  keys?: (item: Item) => Record<string, string>;
  /** How long to wait for a reward report after the agent returned nothing (default 10 s). */
  rewardTimeoutMs?: number;
}

export function gatewayWorkflow<Item>(gateway: Pick<GatewayServer, 'url' | 'recorder'>, agent: GatewayAgent<Item>, opts: GatewayWorkflowOptions<Item> = {}): RolloutWorkflow<Item> {
  return async (item: Item, ctx: RolloutContext): Promise<Trajectory> => {
    const rolloutId = `${ctx.groupId}.${ctx.member}.${ctx.attempt}.${randomBytes(4).toString('hex')}`;
    const recorder = gateway.recorder;
    recorder.open(rolloutId, { groupId: ctx.groupId, keys: opts.keys?.(item) ?? {} });
    const baseURL = `${gateway.url}/rollouts/${rolloutId}/v1`;
    try {
      const returned = await agent(item, {
        baseURL, apiKey: opts.token ?? 'agentrl-gateway', rolloutId, rewardURL: `${baseURL}/rollouts/${rolloutId}/reward`, signal: ctx.signal, rollout: ctx,
      });
      ctx.signal.throwIfAborted();
      const record = recorder.get(rolloutId);
      if (!record) throw new Error(`gateway rollout ${rolloutId} disappeared before its reward was known`);
      if (typeof returned === 'number') {
        if (record.reward !== null) throw new Error(`the agent of rollout ${rolloutId} both reported a reward (${record.reward}) and returned one (${returned}); do one of the two`);
        recorder.setReward(rolloutId, returned);
      } else if (record.reward === null) {
        await withTimeout(recorder.waitForReward(rolloutId, ctx.signal), opts.rewardTimeoutMs ?? 10_000, `the agent of rollout ${rolloutId} returned without a reward and none was reported within ${opts.rewardTimeoutMs ?? 10_000} ms; return the reward, or POST {"reward": r} to ${baseURL}/rollouts/${rolloutId}/reward`);
      }
      const traj = recorder.take(rolloutId);
      if (traj.samples.length === 0) throw new Error(`the agent of rollout ${rolloutId} made no model call through the gateway (its baseURL was ${baseURL}); there is nothing to train on`);
      return traj;
    } catch (e) {
      recorder.discard(rolloutId);
      throw e;
    }
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}
