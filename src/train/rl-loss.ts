/** Adapts the pure policy losses of src/rl to the trainer's flattened per-token LossFn. */
import { LossConfigSchema, policyLoss, type LossConfigInput } from '../rl/losses.ts';
import type { LossFn } from './builtin-trainer.ts';

export function rlLoss(cfgIn: LossConfigInput): LossFn {
  const parsed = LossConfigSchema.safeParse(cfgIn);
  if (!parsed.success) throw new Error(`invalid loss config: ${parsed.error.issues.map((i) => `loss.${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const cfg = parsed.data;
  if (cfg.kind === 'decoupled_ppo') {
    return (inp) => {
      if (!inp.proxLogprobs) throw new Error("loss.kind 'decoupled_ppo' needs proximal logprobs: call trainer.computeLogprobs(samples) before trainStep and pass them as proxLogprobs");
      return run(inp);
    };
  }
  return run;

  function run(inp: Parameters<LossFn>[0]): ReturnType<LossFn> {
    const out = policyLoss({ logprobs: inp.logprobs, oldLogprobs: inp.oldLogprobs, proxLogprobs: inp.proxLogprobs, entropy: inp.entropy, advantages: inp.advantages, seqIds: inp.seqIds }, cfg);
    return { loss: out.loss, dLogp: out.dLogp, dEnt: out.dEnt, metrics: out.metrics as unknown as Record<string, number> };
  }
}
