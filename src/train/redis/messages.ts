/** The two messages of the rollout queue: a task (trainer → worker) and its result (worker → trainer). */
import type { Trajectory } from '../../core/types.ts';
import { decodeMessage, encodeMessage } from '../../core/tagged-json.ts';
import type { Fields } from './streams.ts';

/** One workflow run: what the in-process controller would pass to the workflow, minus the signal. */
export interface TaskMessage<Item = unknown> {
  /** Unique within the run: `<session>:g<group>.m<member>.a<attempt>`. */
  taskId: string;
  item: Item;
  groupIndex: number;
  groupId: string;
  member: number;
  attempt: number;
  /** Trainer version at admission: the worker samples with weights at least this new. */
  admitVersion: number;
}

export interface ResultMessage {
  taskId: string;
  /** Consumer name of the worker that ran it. */
  worker: string;
  ok: boolean;
  trajectories?: Trajectory[];
  /** The workflow's error (ok: false): the trainer retries or fails the group as in-process. */
  error?: string;
  /** Times the task had been delivered when this run of it started (> 1: taken over from a dead worker). */
  deliveries: number;
  /** Seconds the workflow ran on the worker. */
  seconds: number;
}

export function taskFields(t: TaskMessage): Fields {
  return { taskId: t.taskId, data: encodeMessage(t) };
}

export function resultFields(r: ResultMessage): Fields {
  return { taskId: r.taskId, data: encodeMessage(r) };
}

/** The message in an entry's `data` field; an error naming the entry when it is not one. */
export function parseMessage<T>(fields: Fields, what: string, id: string): T {
  if (typeof fields.data !== 'string') throw new Error(`${what} entry ${id} has no data field`);
  try {
    return decodeMessage<T>(fields.data);
  } catch (e) {
    throw new Error(`${what} entry ${id} is not valid JSON: ${(e as Error).message}`);
  }
}
