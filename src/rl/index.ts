/** Public API of src/rl: losses with analytic gradients, advantage estimators, MAGE credit assignment. */
export {
  AGGREGATIONS,
  LossConfigSchema,
  aggregationWeights,
  makePolicyLoss,
  policyLoss,
  type Aggregation,
  type LossConfig,
  type LossConfigInput,
  type PolicyLossMetrics,
  type PolicyLossOutput,
  type TokenBatch,
} from './losses.ts';
export {
  GroupAdvantageConfigSchema,
  groupAdvantages,
  maskedWhiten,
  updateRunningMean,
  type GroupAdvantageConfig,
  type GroupAdvantageConfigInput,
  type GroupAdvantageResult,
  type GroupStats,
  type RunningMeanState,
  type WhitenOptions,
} from './advantages.ts';
export {
  CreditConfigSchema,
  StepAdvantageConfigSchema,
  assignTrialCredit,
  differentialRewards,
  invalidPenalty,
  lengthPenalty,
  stepAdvantages,
  trialReturns,
  type CreditConfig,
  type CreditConfigInput,
  type StepAdvantageConfig,
  type StepAdvantageConfigInput,
  type StepAdvantageResult,
  type StepSample,
  type TrialReturns,
  type TrialReturnsConfig,
  type TrialStep,
  type CreditStep,
  MAGE_CREDIT_SHAPE,
} from './credit.ts';
export { groupSamples, type GroupKeys, type Grouping } from './groups.ts';
export { mean, std } from './stats.ts';
