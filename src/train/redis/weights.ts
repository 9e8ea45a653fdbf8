/**
 * Weights travel outside the task queue (as in verl and AReaL): after each step the trainer writes
 * the new weights to a file on disk shared with the workers — safetensors under agentrl's parameter
 * names, written to a temporary name and renamed, so a reader never sees half a file — and then
 * publishes `{version, path}` under K:weights. Workers read the key, load the file into their
 * engine and tag the tokens they sample with that version.
 *
 * Order matters for the staleness rule: a task admitted at version v is only sent once the weights
 * of version v are published (`WeightPublisher.settled()`), so a worker that sees the task can
 * always load weights at least that new.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { ParamView } from '../../engine/model.ts';
import { readSafetensors, writeSafetensors } from '../../engine/safetensors.ts';
import { paramsToTensors, tensorsToParams } from '../trainer-checkpoint.ts';

/** What the weight files are written from and read into: the model's parameter layout. */
export interface WeightLayout {
  readonly layout: readonly ParamView[];
  readonly params: Float32Array;
}

export interface PublishedWeights {
  version: number;
  path: string;
}

const FILE = /^weights-v(\d+)\.safetensors$/;

export class WeightPublisher {
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private latest: number | null = null;
  readonly dir: string;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly model: WeightLayout,
    dir: string,
    private readonly keep = 2,
  ) {
    this.dir = resolve(dir);
    mkdirSync(this.dir, { recursive: true });
  }

  /**
   * Queue publication of `params` as `version` (writes run one at a time, in order). Throws the
   * error of an earlier failed publication: the trainer must stop rather than train on while the
   * workers keep sampling from old weights.
   */
  publish(params: Float32Array, version: number): void {
    if (this.failure) throw this.failure;
    this.latest = version;
    this.chain = this.chain.then(() => this.write(params, version)).catch((e: unknown) => {
      this.failure ??= new Error(`publishing weights version ${version} to ${this.dir} failed: ${(e as Error).message}`);
    });
  }

  /** Resolves once every queued publication is on disk and in Redis; rejects if one failed. */
  async settled(): Promise<void> {
    await this.chain;
    if (this.failure) throw this.failure;
  }

  /** The newest version queued (null before the first). */
  version(): number | null {
    return this.latest;
  }

  private async write(params: Float32Array, version: number): Promise<void> {
    const path = join(this.dir, `weights-v${version}.safetensors`);
    const tmp = join(this.dir, `.weights-v${version}.${process.pid}.tmp`);
    await writeFile(tmp, writeSafetensors(paramsToTensors(this.model, params), { agentrl_weight_version: String(version) }));
    await rename(tmp, path);
    const msg: PublishedWeights = { version, path };
    await this.redis.set(this.key, JSON.stringify(msg));
    // Older versions are no longer offered; a worker still reading one holds it open (or retries).
    const old = readdirSync(this.dir).flatMap((f) => {
      const m = FILE.exec(f);
      return m && Number(m[1]) < version ? [{ f, v: Number(m[1]) }] : [];
    });
    old.sort((a, b) => b.v - a.v);
    for (const { f } of old.slice(this.keep - 1)) rmSync(join(this.dir, f), { force: true });
  }
}

/** The newest published weights of a run, or null before the trainer has published any. */
export async function publishedWeights(redis: Redis, key: string): Promise<PublishedWeights | null> {
  const raw = await redis.get(key);
  if (!raw) return null;
  const m = JSON.parse(raw) as PublishedWeights;
  if (!Number.isInteger(m.version) || typeof m.path !== 'string') throw new Error(`${key} holds '${raw}', not {version, path}`);
  return m;
}

/** Read a published weight file into a new buffer in `model`'s layout (names and shapes checked). */
export async function readWeightsFile(path: string, model: WeightLayout): Promise<Float32Array> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new Error(`cannot read weights ${path} (${(e as Error).message}); the weights directory must be on disk shared by the trainer and every worker (rollout.weightsDir)`);
  }
  const { tensors } = readSafetensors(bytes, path);
  const buf = new Float32Array(model.params.length);
  tensorsToParams(model, tensors, buf, `weights ${path}`);
  return buf;
}
