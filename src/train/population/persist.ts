/**
 * File helpers for population checkpoints: weights ↔ named tensors, atomic JSON writes, and
 * removal of directories no longer referenced.
 *
 * Layout of a population directory (see savePopulation in ../population.ts):
 *
 *   population.json                 the state: config, round, members (hyperparameters, counters,
 *                                   fitness window), win-rate table, snapshot list, and the name of
 *                                   the generation directory holding the members' checkpoints
 *   gen-<round>-<rand>/members/<id> one trainer checkpoint per member (trainer-checkpoint.ts)
 *   snapshots/<member>-s<step>      one weights-only checkpoint per snapshot (immutable)
 *
 * A save writes a new generation directory and any new snapshots first, then replaces
 * population.json atomically (write a temp file, fsync, rename, fsync the directory), and only then
 * deletes the old generation and dropped snapshots. A crash at any instant therefore leaves
 * population.json pointing at complete checkpoints.
 */
import { open, readdir, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fsyncDir } from '../../engine/checkpoint.ts';
export { paramsToTensors, tensorsToParams } from '../trainer-checkpoint.ts';

/** Write JSON to `path` atomically: temp file in the same directory, fsync, rename, fsync the directory. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(value, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** Delete entries of `dir` whose names match `pattern` and are not in `keep`. */
export async function removeUnreferenced(dir: string, pattern: RegExp, keep: ReadonlySet<string>): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) if (pattern.test(n) && !keep.has(n)) await rm(join(dir, n), { recursive: true, force: true });
}

/** A fresh generation directory name for a save at `round`. */
export function generationName(round: number): string {
  return `gen-${String(round).padStart(6, '0')}-${randomBytes(4).toString('hex')}`;
}

/** Directory name of a snapshot under snapshots/. */
export function snapshotDirName(member: string, step: number): string {
  return `${member.replace(/[^A-Za-z0-9_-]/g, '_')}-s${step}`;
}
