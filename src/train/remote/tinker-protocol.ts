/**
 * The Tinker training API's wire shapes (HTTP/JSON under /api/v1/), shared by the client
 * (tinker-client.ts) and `agentrl serve trainer` (src/serve/trainer-server.ts). Field names follow
 * the public Tinker SDK's types; request schemas ignore unknown keys (the SDK adds `type` tags and
 * may add fields), responses are parsed leniently for the same reason.
 *
 * Every training call answers `{request_id}` at once; the result is polled with
 * `POST /api/v1/retrieve_future {request_id}`, which answers `{"type": "try_again", …}` until the
 * work is done, then the result, or `{error, category}` when the work failed.
 *
 * Losses are SUMS over every position of every datum (no averaging): per position t with current
 * logprob lp, the datum's `logprobs` input q (the sampler's) and `advantages` A, r = exp(lp − q):
 *   cross_entropy        −w·lp                       (inputs target_tokens, weights)
 *   importance_sampling  −r·A
 *   ppo                  −min(r·A, clip(r, lo, hi)·A) (loss_fn_config clip_low_threshold = lo, default 0.8,
 *                                                      clip_high_threshold = hi, default 1.2: ratios, not ε)
 *   cispo                −clip(r, lo, hi)·A·lp, the clipped ratio held constant (defaults 0, 4)
 *   dro                  −(A·lp − ½β·(lp − q)²)      (loss_fn_config beta, default 0.1)
 */
import { z } from 'zod';

export const API_PREFIX = '/api/v1';

// ── tensors and datums ───────────────────────────────────────────────────────────────────────

export const TensorDataSchema = z.object({
  data: z.array(z.number()),
  dtype: z.enum(['int64', 'float32']),
  /** Optional; a flat list of N values is shape [N]. */
  shape: z.array(z.number().int().min(0)).nullish(),
  sparse_crow_indices: z.array(z.number()).nullish(),
  sparse_col_indices: z.array(z.number()).nullish(),
});
export type TensorData = z.infer<typeof TensorDataSchema>;

export const EncodedTextChunkSchema = z.object({ type: z.literal('encoded_text').default('encoded_text'), tokens: z.array(z.number().int()) });
/** Image chunks exist in the API; agentrl's text models take token chunks only (the server names the chunk it refuses). */
export const ModelInputChunkSchema = z.union([EncodedTextChunkSchema, z.object({ type: z.string() }).passthrough()]);
export const ModelInputSchema = z.object({ chunks: z.array(ModelInputChunkSchema) });
export type ModelInput = z.infer<typeof ModelInputSchema>;

export const DatumSchema = z.object({
  model_input: ModelInputSchema,
  loss_fn_inputs: z.record(TensorDataSchema).default({}),
});
export type Datum = z.infer<typeof DatumSchema>;

export const LOSS_FNS = ['cross_entropy', 'importance_sampling', 'ppo', 'cispo', 'dro'] as const;
export type TinkerLossFn = (typeof LOSS_FNS)[number];
/** The loss_fn_config keys each loss takes, and the loss_fn_inputs it needs. */
export const LOSS_CONFIG_KEYS: Record<TinkerLossFn, readonly string[]> = {
  cross_entropy: [], importance_sampling: [], ppo: ['clip_low_threshold', 'clip_high_threshold'], cispo: ['clip_low_threshold', 'clip_high_threshold'], dro: ['beta'],
};
export const LOSS_INPUTS: Record<TinkerLossFn, readonly string[]> = {
  cross_entropy: ['target_tokens', 'weights'], importance_sampling: ['target_tokens', 'logprobs', 'advantages'], ppo: ['target_tokens', 'logprobs', 'advantages'],
  cispo: ['target_tokens', 'logprobs', 'advantages'], dro: ['target_tokens', 'logprobs', 'advantages'],
};
export const LOSS_CONFIG_DEFAULTS: Record<string, number> = { 'ppo.clip_low_threshold': 0.8, 'ppo.clip_high_threshold': 1.2, 'cispo.clip_low_threshold': 0, 'cispo.clip_high_threshold': 4, 'dro.beta': 0.1 };

export const ForwardBackwardInputSchema = z.object({
  data: z.array(DatumSchema).min(1),
  loss_fn: z.enum(LOSS_FNS),
  loss_fn_config: z.record(z.number()).nullish(),
});
export type ForwardBackwardInput = z.infer<typeof ForwardBackwardInputSchema>;

// ── requests ─────────────────────────────────────────────────────────────────────────────────

export const CreateSessionRequestSchema = z.object({
  tags: z.array(z.string()).default([]),
  user_metadata: z.record(z.unknown()).nullish(),
  sdk_version: z.string().default(''),
  project_id: z.string().nullish(),
});
export const SessionHeartbeatRequestSchema = z.object({ session_id: z.string().min(1) });

export const LoraConfigSchema = z.object({
  rank: z.number().int().min(1),
  seed: z.number().int().nullish(),
  train_unembed: z.boolean().default(true),
  train_mlp: z.boolean().default(true),
  train_attn: z.boolean().default(true),
  /** agentrl extension (the update is (alpha/rank)·B·A); default 8, PEFT's. */
  alpha: z.number().positive().finite().nullish(),
});
export type TinkerLoraConfig = z.input<typeof LoraConfigSchema>;

export const CreateModelRequestSchema = z.object({
  session_id: z.string().min(1),
  model_seq_id: z.number().int().nullish(),
  base_model: z.string().min(1),
  user_metadata: z.record(z.unknown()).nullish(),
  /** Absent/null: full fine-tuning (agentrl serve trainer; the hosted service trains LoRA only). */
  lora_config: LoraConfigSchema.nullish(),
});
export const ModelIdRequestSchema = z.object({ model_id: z.string().min(1) });
export const ForwardBackwardRequestSchema = z.object({ model_id: z.string().min(1), forward_backward_input: ForwardBackwardInputSchema, seq_id: z.number().int().nullish() });
export const ForwardRequestSchema = z.object({ model_id: z.string().min(1), forward_input: ForwardBackwardInputSchema, seq_id: z.number().int().nullish() });

export const AdamParamsSchema = z.object({
  learning_rate: z.number().min(0).finite().default(1e-4),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.95),
  eps: z.number().positive().finite().default(1e-12),
  /** Decoupled (AdamW) weight decay. */
  weight_decay: z.number().min(0).finite().default(0),
  /** Max global gradient L2 norm; 0 = no clipping. */
  grad_clip_norm: z.number().min(0).finite().default(0),
});
export type AdamParams = z.output<typeof AdamParamsSchema>;
export const OptimStepRequestSchema = z.object({ model_id: z.string().min(1), adam_params: AdamParamsSchema, seq_id: z.number().int().nullish() });

/** Checkpoint names become URL path segments and tinker:// paths. */
const CheckpointName = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'letters, digits, ".", "_" and "-" only (1–128 characters)');
export const SaveWeightsForSamplerRequestSchema = z.object({
  model_id: z.string().min(1), path: CheckpointName.nullish(), seq_id: z.number().int().nullish(),
  sampling_session_seq_id: z.number().int().nullish(), ttl_seconds: z.number().int().nullish(),
});
export const SaveWeightsRequestSchema = z.object({
  model_id: z.string().min(1), path: CheckpointName.nullish(), seq_id: z.number().int().nullish(), ttl_seconds: z.number().int().nullish(), overwrite: z.boolean().default(false),
});
export const LoadWeightsRequestSchema = z.object({ model_id: z.string().min(1), path: z.string().min(1), optimizer: z.boolean().default(false), seq_id: z.number().int().nullish() });
export const FutureRetrieveRequestSchema = z.object({ request_id: z.string().min(1), allow_metadata_only: z.boolean().default(false) });

export const SamplingParamsSchema = z.object({
  max_tokens: z.number().int().min(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()), z.array(z.number().int())]).nullish(),
  temperature: z.number().positive().finite().default(1),
  /** −1 = off. */
  top_k: z.number().int().min(-1).default(-1),
  top_p: z.number().gt(0).max(1).default(1),
});
export const CreateSamplingSessionRequestSchema = z.object({
  session_id: z.string().min(1), sampling_session_seq_id: z.number().int().nullish(), base_model: z.string().nullish(), model_path: z.string().nullish(),
});
export const SampleRequestSchema = z.object({
  num_samples: z.number().int().min(1).max(1024).default(1),
  prompt: ModelInputSchema,
  sampling_params: SamplingParamsSchema,
  base_model: z.string().nullish(),
  model_path: z.string().nullish(),
  sampling_session_id: z.string().nullish(),
  seq_id: z.number().int().nullish(),
  prompt_logprobs: z.boolean().nullish(),
  topk_prompt_logprobs: z.number().int().min(0).default(0),
});

// ── responses ────────────────────────────────────────────────────────────────────────────────

export const UntypedFutureSchema = z.object({ request_id: z.string(), model_id: z.string().nullish() });
export const TryAgainSchema = z.object({ type: z.literal('try_again'), request_id: z.string(), queue_state: z.string().optional() });
export const RequestFailedSchema = z.object({ error: z.string(), category: z.string().default('unknown') });
export const CreateSessionResponseSchema = z.object({ session_id: z.string() });
export const CreateModelResponseSchema = z.object({ model_id: z.string() });
export const ForwardBackwardOutputSchema = z.object({
  loss_fn_output_type: z.string().default(''),
  /** One record per datum: `logprobs` (the current policy's, per position) and `elementwise_loss`. */
  loss_fn_outputs: z.array(z.record(TensorDataSchema)),
  metrics: z.record(z.number()).default({}),
});
export type ForwardBackwardOutput = z.infer<typeof ForwardBackwardOutputSchema>;
export const OptimStepResponseSchema = z.object({ metrics: z.record(z.number()).nullish() });
export const SavePathResponseSchema = z.object({ path: z.string() });
export const LoadWeightsResponseSchema = z.object({ path: z.string().nullish() });
export const CheckpointArchiveUrlResponseSchema = z.object({ url: z.string(), expires: z.string().nullish() });
export const CreateSamplingSessionResponseSchema = z.object({ sampling_session_id: z.string() });
export const SampledSequenceSchema = z.object({ stop_reason: z.string(), tokens: z.array(z.number().int()), logprobs: z.array(z.number()).nullish() });
export const SampleResponseSchema = z.object({ sequences: z.array(SampledSequenceSchema), prompt_logprobs: z.array(z.number().nullable()).nullish() });
export const ServerCapabilitiesSchema = z.object({ supported_models: z.array(z.object({ model_name: z.string().nullish(), max_context_length: z.number().nullish() })) });

// ── helpers ──────────────────────────────────────────────────────────────────────────────────

export function tensor(data: ArrayLike<number>, dtype: 'int64' | 'float32'): TensorData {
  return { data: Array.from(data), dtype, shape: [data.length] };
}

/** A datum of the next-token layout: position i of `tokens` predicts `targets[i]`. */
export function datum(tokens: readonly number[], inputs: Record<string, TensorData>): Datum {
  return { model_input: { chunks: [{ type: 'encoded_text', tokens: [...tokens] }] }, loss_fn_inputs: inputs };
}

/** Checkpoint kinds: `weights` (save_weights: weights + optimizer) and `sampler_weights` (weights to sample with). */
export type CheckpointKind = 'weights' | 'sampler_weights';

export function tinkerPath(modelId: string, kind: CheckpointKind, name: string): string {
  return `tinker://${modelId}/${kind}/${name}`;
}

/** `tinker://<model_id>/<kind>/<name>` → its parts; errors name the expected form. */
export function parseTinkerPath(path: string): { modelId: string; kind: CheckpointKind; name: string } {
  const m = /^tinker:\/\/([^/]+)\/(weights|sampler_weights)\/([^/]+)$/.exec(path);
  if (!m) throw new Error(`'${path}' is not a checkpoint path; expected tinker://<model_id>/weights/<name> or tinker://<model_id>/sampler_weights/<name>`);
  return { modelId: m[1]!, kind: m[2] as CheckpointKind, name: m[3]! };
}

/**
 * Where a checkpoint's archive URL is asked for (the SDK's `get_checkpoint_archive_url`): the answer
 * is `{url, expires}` (or a 302 to the url). agentrl serve trainer's url serves one safetensors file
 * of the checkpoint's weights (see SAMPLER_WEIGHTS_FORMAT), not the hosted service's tar archive.
 */
export function archiveRoute(modelId: string, kind: CheckpointKind, name: string): string {
  return `${API_PREFIX}/training_runs/${encodeURIComponent(modelId)}/checkpoints/${kind}/${encodeURIComponent(name)}/archive`;
}

/**
 * safetensors metadata `format` of the weights agentrl serve trainer lets clients download: every
 * parameter of the model under agentrl's own names (`paramsToTensors`), LoRA merged in, F32, with
 * the optimizer step in metadata `step`. The local sampler loads them with `tensorsToParams`.
 */
export const SAMPLER_WEIGHTS_FORMAT = 'agentrl-params';
