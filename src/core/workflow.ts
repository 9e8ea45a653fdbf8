/**
 * The agent side of every training loop: a workflow runs one rollout of any agent (a single-turn
 * task, a MAGE trial, a tool or search agent) and returns its trajectory. The rollout controller
 * (src/train/rollout-controller.ts) calls workflows; agents implement them.
 */
import type { Trajectory } from './types.ts';

/** What a workflow run is told. */
export interface RolloutContext {
  /** Weights version of the engine when this run started (the trainer's version when no engine is given). */
  version: number;
  /** Trainer version when the group was admitted (staleness is measured from here). */
  admitVersion: number;
  /** Aborted when the group fails or the controller stops; pass it to `generate` and to tools. */
  signal: AbortSignal;
  /** Admission index of the group, 0-based. */
  groupIndex: number;
  /** A stable id for the group (`g<groupIndex>`), handy as Trajectory.groupId. */
  groupId: string;
  /** Which run of the group, 0 … groupSize − 1. */
  member: number;
  /** 0 for the first try, k for the k-th retry. */
  attempt: number;
}

/** One agent rollout: any async function from a task item to its trajectory (or trajectories). */
export type RolloutWorkflow<Item> = (item: Item, ctx: RolloutContext) => Promise<Trajectory | Trajectory[]>;
