/**
 * The `engine:` section of a run config that puts generation on remote inference servers instead
 * of the built-in engine:
 *
 *   engine:
 *     kind: vllm                 # or sglang
 *     urls: [http://gpu0:8000, http://gpu1:8000]
 *     api: generate              # vLLM only: /inference/v1/generate (default) or completions (/v1/completions)
 *     weightSyncDir: /shared/agentrl-weights   # the trainer writes each version here; every server must read it
 *     timeoutMs: 300000
 *     retries: 3
 *
 * `createRemoteEngine` turns a parsed section into a RemoteEngine; the tokenizer must be the served
 * model's (load it from the directory the servers serve) and `model` gives the trainer's layout.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { formatZodError } from '../../core/config-errors.ts';
import { Transformer } from '../model.ts';
import type { Tokenizer } from '../types.ts';
import { RemoteEngine } from './remote-engine.ts';
import { SglangClient } from './sglang-client.ts';
import { VllmClient } from './vllm-client.ts';
import type { InferenceServerClient } from './server-client.ts';

const httpUrl = z.string().refine((u) => {
  try {
    const p = new URL(u);
    return p.protocol === 'http:' || p.protocol === 'https:';
  } catch {
    return false;
  }
}, { message: 'must be an http:// or https:// URL of an inference server, e.g. http://127.0.0.1:8000' });

export const RemoteEngineSectionSchema = z
  .object({
    /** The servers' API: vLLM's or SGLang's (`agentrl serve inference` speaks both). */
    kind: z.enum(['vllm', 'sglang']),
    /** One base URL per server (requests are spread over them, each trajectory pinned to one). */
    urls: z.array(httpUrl).min(1, { message: 'give at least one server URL' }),
    /** vLLM only: 'generate' = POST /inference/v1/generate (default), 'completions' = POST /v1/completions with token-id prompts. */
    api: z.enum(['generate', 'completions']).optional(),
    /** vLLM completions only: the served model name (default: the server's). */
    model: z.string().min(1).optional(),
    /** vLLM only: the endpoint that loads weights from a directory (default /update_weights_from_disk). */
    loadWeightsPath: z.string().regex(/^\//, { message: "must be a path starting with '/'" }).optional(),
    /** Where each new weight version is written (a `v<N>` directory) for the servers to load: a path every server can read. Needed to train. */
    weightSyncDir: z.string().min(1).optional(),
    /** Per generate attempt, ms. At most 300 000: Node's fetch stops waiting for an answer's headers after 300 s anyway. */
    timeoutMs: z.number().int().positive().max(300_000, { message: "at most 300000 (Node's fetch gives up on a response after 300 s); keep generations shorter than that" }).default(300_000),
    /** Per control call (pause, load weights, resume), ms. */
    controlTimeoutMs: z.number().int().positive().default(120_000),
    /** Retries of a failed attempt (connection error, timeout, 5xx); 4xx are never retried. */
    retries: z.number().int().min(0).default(3),
    backoffMs: z.number().min(0).default(200),
    /** How long an unreachable server is skipped before it is tried again (doubles while it stays down). */
    downMs: z.number().min(0).default(2000),
    /** Prompt tokens hashed to pin requests without an affinity hint to one server. */
    pinPrefixTokens: z.number().int().min(1).default(64),
    /** A pinned server is used while its in-flight requests exceed the least-loaded server's by at most this. */
    balanceSlack: z.number().int().min(0).default(2),
    /** The servers' max model length (prompt + completion), when smaller than the model's context length. */
    contextLength: z.number().int().min(2).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.kind !== 'vllm') {
      for (const k of ['api', 'model', 'loadWeightsPath'] as const) {
        if (s[k] !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: `only for kind 'vllm' (SGLang has one /generate endpoint); remove it` });
      }
    }
    if (s.api !== 'completions' && s.model !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model'], message: "only used with api 'completions'; remove it" });
    if (new Set(s.urls).size !== s.urls.length) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['urls'], message: 'lists a server twice' });
  });
export type RemoteEngineSection = z.output<typeof RemoteEngineSectionSchema>;
export type RemoteEngineSectionInput = z.input<typeof RemoteEngineSectionSchema>;

/** Parse an `engine:` section; errors name the field (`engine.urls.0: …`). */
export function parseRemoteEngineSection(input: unknown): RemoteEngineSection {
  const r = RemoteEngineSectionSchema.safeParse(input);
  if (!r.success) throw new Error(`invalid run config:\n  ${formatZodError(r.error, { schema: RemoteEngineSectionSchema, prefix: 'engine' }).split('; ').join('\n  ')}`);
  return r.data;
}

/** The per-server clients of a section. */
export function remoteClients(section: RemoteEngineSection): InferenceServerClient[] {
  return section.urls.map((url) =>
    section.kind === 'vllm'
      ? new VllmClient(url, { ...(section.api ? { api: section.api } : {}), ...(section.model ? { model: section.model } : {}), ...(section.loadWeightsPath ? { loadWeightsPath: section.loadWeightsPath } : {}) })
      : new SglangClient(url));
}

export interface CreateRemoteEngineOptions {
  /** The served model's tokenizer. */
  tokenizer: Tokenizer;
  /**
   * The trainer's model: its config (and backend) give the layout of the weights `setWeights`
   * receives; the engine writes them from its own copy, never touching this model's params.
   * Needed when `weightSyncDir` is set.
   */
  model?: Transformer;
  /** Written into every weight directory (a server could start from it). */
  weightTokenizer?: Tokenizer;
  /** Version the servers serve at start (resume: the checkpoint's). Default 0. */
  initialVersion?: number;
}

/** A RemoteEngine for a parsed `engine:` section. */
export function createRemoteEngine(section: RemoteEngineSection, o: CreateRemoteEngineOptions): RemoteEngine {
  if (section.weightSyncDir !== undefined && !o.model) throw new Error('createRemoteEngine: engine.weightSyncDir is set but no model was given to take the weight layout from');
  const contextLength = section.contextLength ?? o.model?.config.contextLength;
  if (o.model && section.contextLength !== undefined && section.contextLength > o.model.config.contextLength) {
    throw new Error(`invalid run config:\n  engine.contextLength: ${section.contextLength} is larger than the model's context length ${o.model.config.contextLength}`);
  }
  return new RemoteEngine({
    servers: remoteClients(section),
    tokenizer: o.tokenizer,
    ...(contextLength !== undefined ? { contextLength } : {}),
    timeoutMs: section.timeoutMs,
    controlTimeoutMs: section.controlTimeoutMs,
    retries: section.retries,
    backoffMs: section.backoffMs,
    downMs: section.downMs,
    pinPrefixTokens: section.pinPrefixTokens,
    balanceSlack: section.balanceSlack,
    initialVersion: o.initialVersion ?? 0,
    ...(section.weightSyncDir !== undefined && o.model
      ? { weightSync: { dir: resolve(section.weightSyncDir), model: new Transformer(o.model.config, o.model.backend), ...(o.weightTokenizer ? { tokenizer: o.weightTokenizer } : {}) } }
      : {}),
  });
}
