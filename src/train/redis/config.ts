/**
 * The `rollout` section of a run config: where rollouts run. `inprocess` (the default) runs them on
 * the trainer's own engine; `redis` sends them as tasks through Redis Streams to `agentrl worker`
 * processes on any number of machines (src/train/redis/worker.ts), under the same staleness rule.
 *
 *   rollout: { kind: redis, url: redis://10.0.0.5:6379, key: runs/kuhn-1, visibilityMs: 30000 }
 */
import { z } from 'zod';
import { formatZodError } from '../../core/config-errors.ts';

export const RolloutSectionSchema = z
  .object({
    kind: z.enum(['inprocess', 'redis']).default('inprocess'),
    /** Redis server (redis://[user:password@]host:port[/db]); trainer and workers must reach the same one. */
    url: z.string().regex(/^rediss?:\/\/\S+$/, 'expected a Redis URL such as redis://127.0.0.1:6379').optional(),
    /** Key prefix of this run's streams and keys; workers join the run by it (`agentrl worker --run KEY`). */
    key: z.string().regex(/^[A-Za-z0-9_.:/-]+$/, 'use letters, digits and _ . : / - only').optional(),
    /**
     * A task delivered to a worker that neither finishes it nor sends a heartbeat for this long is
     * taken over by another worker (the first worker is presumed dead). Above the longest pause of a
     * worker's event loop, far below the run's length.
     */
    visibilityMs: z.number().int().min(100).default(30_000),
    /**
     * Directory the trainer writes each weight version to, read back by the workers: on disk all of
     * them share (default: RUN/weights). Weights never travel through Redis, only their path.
     */
    weightsDir: z.string().min(1).optional(),
    /** Weight versions kept on disk (older files are deleted once newer ones are published). */
    keepWeights: z.number().int().min(1).default(2),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.kind === 'redis') {
      if (!c.url) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['url'], message: 'required with kind: redis (e.g. redis://127.0.0.1:6379)' });
      if (!c.key) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['key'], message: 'required with kind: redis: the run\'s key prefix, which workers join with --run KEY' });
    } else {
      for (const f of ['url', 'key', 'weightsDir'] as const) {
        if (c[f] !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [f], message: `only used with kind: redis; set rollout.kind: redis or remove ${f}` });
      }
    }
  });
export type RolloutSection = z.output<typeof RolloutSectionSchema>;
export type RolloutSectionInput = z.input<typeof RolloutSectionSchema>;

/** Parse a rollout section, naming the field and the fix on error (`rollout.visibilityMs: …`). */
export function parseRolloutSection(input: unknown): RolloutSection {
  const r = RolloutSectionSchema.safeParse(input ?? {});
  if (!r.success) throw new Error(`invalid run config: ${formatZodError(r.error, { schema: RolloutSectionSchema, prefix: 'rollout' })}`);
  return r.data;
}
