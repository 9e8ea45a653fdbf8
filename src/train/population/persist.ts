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
import { f32Tensor, type TensorMap } from '../../engine/safetensors.ts';
import type { Transformer } from '../../engine/model.ts';

/** One tensor per parameter view of `model`, holding values of `buf` (same layout as model.params). */
export function paramsToTensors(model: Transformer, buf: Float32Array): TensorMap {
  const out: TensorMap = {};
  for (const v of model.layout) out[v.name] = f32Tensor(v.shape, buf.slice(v.offset, v.offset + v.size));
  return out;
}

/** Fill `buf` (model layout) from named tensors; errors name the missing or mis-sized tensor. */
export function tensorsToParams(model: Transformer, t: TensorMap, buf: Float32Array, what: string): void {
  for (const v of model.layout) {
    const x = t[v.name];
    if (!x) throw new Error(`${what}: missing tensor '${v.name}' (was it written by a different model config?)`);
    if (x.data.length !== v.size) throw new Error(`${what}: tensor '${v.name}' has ${x.data.length} values, the model expects ${v.size}`);
    buf.set(x.data as Float32Array, v.offset);
  }
}

/** fsync a directory; file systems that cannot sync directories are tolerated. */
async function fsyncDir(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    await fh?.close();
  }
}

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
