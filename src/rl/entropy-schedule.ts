/**
 * Entropy-bonus schedule: a bonus large enough to keep rarely rewarded actions alive early in
 * training (before a search across episodes has formed, an action whose reward is rare goes extinct
 * and policy gradient cannot bring it back) is too large to let the policy sharpen later. The
 * coefficient is held at `from` until `start`, falls linearly to `to` over `steps` steps, then stays.
 */
import { z } from 'zod';

export const EntropyDecaySchema = z
  .object({
    /** Coefficient after the decay. */
    to: z.number().min(0),
    /** Step (weight version) at which the decay starts; before it the loss's entropyCoef holds. */
    start: z.number().int().min(0).default(0),
    /** Steps over which it falls linearly from loss.entropyCoef to `to`. */
    steps: z.number().int().min(1),
  })
  .strict();
export type EntropyDecay = z.output<typeof EntropyDecaySchema>;

/** The entropy coefficient in effect for the batch trained at `step` (a weight version, so resumes continue the schedule). */
export function entropyCoefAt(from: number, decay: EntropyDecay | undefined, step: number): number {
  if (!decay) return from;
  const frac = Math.min(1, Math.max(0, (step - decay.start) / decay.steps));
  return from + (decay.to - from) * frac;
}
