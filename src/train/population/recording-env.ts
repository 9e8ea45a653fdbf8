/**
 * Per-trial outcomes for the win-rate table. metaRlIteration reports aggregates only, so the
 * league hands it environments wrapped in a transparent proxy that notes, per episode, whether
 * the agent won and its return; the last entry is the trial's final episode.
 */
import type { TextEnv } from '../../envs/types.ts';

export interface EpisodeOutcome {
  won: boolean;
  return: number;
  done: boolean;
}

export interface TrialRecord {
  opponent: string;
  episodes: EpisodeOutcome[];
}

/** Wrap `env` so that every reset/restart starts an entry of `record.episodes` and every step updates it. */
export function recordingEnv(env: TextEnv, record: TrialRecord): TextEnv {
  const current = (): EpisodeOutcome => {
    const e = record.episodes[record.episodes.length - 1];
    if (!e) throw new Error('recordingEnv: step before reset (the trial runner must reset the env first)');
    return e;
  };
  return new Proxy(env, {
    get(target, prop) {
      if (prop === 'reset' || prop === 'restart') {
        return (...args: unknown[]) => {
          const obs = (target[prop] as (...a: unknown[]) => string).apply(target, args);
          record.episodes.push({ won: false, return: 0, done: false });
          return obs;
        };
      }
      if (prop === 'step') {
        return (text: string) => {
          const r = target.step(text);
          const e = current();
          e.done = r.done;
          e.won = target.won();
          e.return = target.episodeReturn();
          return r;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Result of a trial's final episode for the win-rate table: 1 won, ½ draw (finished with return 0), 0 otherwise. */
export function finalResult(record: TrialRecord): number | null {
  const last = record.episodes[record.episodes.length - 1];
  if (!last) return null;
  if (last.won) return 1;
  return last.done && last.return === 0 ? 0.5 : 0;
}
