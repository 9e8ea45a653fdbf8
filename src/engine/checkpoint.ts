/**
 * Training checkpoints: one directory per checkpoint,
 *
 *   model.safetensors       weights (one tensor per parameter)
 *   optimizer.safetensors   AdamW moments as `m.<param>` and `v.<param>` (absent when saved without)
 *   manifest.json           format version, step, weight version, config, tokenizer JSON, RNG
 *                           states, trainer state, size + sha256 + tensor shapes of each file, and
 *                           a checksum of the manifest itself (see "Checks at load" below)
 *
 * Runs keep them as `runs/<name>/checkpoints/step-<9-digit step>` (`checkpointPath`), and
 * `latestCheckpoint(checkpointsDir)` finds the newest.
 *
 * Atomic save protocol (`saveCheckpoint(dir)`), so that a crash at any instant leaves a complete
 * checkpoint loadable from `dir`:
 *   1. write all files into `dir.tmp-<pid>-<rand>`, manifest.json last; fsync each file and the
 *      directory. A crash here leaves `dir` untouched (the temp directory is garbage).
 *   2. if `dir` exists, rename it to `dir.old-<pid>-<rand>` (the "aside" copy); fsync the parent.
 *      A crash here leaves no `dir`, but a complete aside copy: `loadCheckpoint(dir)` falls back
 *      to the newest loadable `dir.old-*` (read-only; it does not rename anything).
 *   3. rename the temp directory to `dir`; fsync the parent. From here `dir` is the new checkpoint.
 *   4. delete the aside copy, then stale temp/aside copies of `dir` left by dead processes.
 * Renames within one directory are atomic on POSIX file systems, so `dir` is always either the
 * complete old or the complete new checkpoint, or absent with a complete aside copy next to it.
 *
 * Checks at load (each failure names the file, field or tensor):
 *   - manifest checksum: sha256 of the manifest's canonical JSON (keys sorted, without the
 *     `checksum` field), plus one sha256 per top-level field and per key of object fields, so an
 *     edited step, RNG state or optimizer setting is refused naming the field (`config.optimizer`).
 *     Since the manifest lists the sha256 of every tensor file, the checksum covers those too.
 *     Manifests written before checksums existed have none and still load: only a checksum that
 *     is present and does not match refuses the checkpoint. It guards against edits and damage,
 *     not against an adversary (who can recompute it).
 *   - every tensor file's size and sha256, and its tensor names and shapes against the manifest
 *     (and `expectShapes`); optimizer moments against the weights;
 *   - every float tensor is finite (NaN/±Infinity weights are refused, also at save).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { nonFiniteAt, readSafetensors, writeSafetensors, type TensorMap } from './safetensors.ts';

export const CHECKPOINT_FORMAT = 'agentrl-checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;
export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const MANIFEST_FILE = 'manifest.json';

export interface Checkpoint {
  /** Optimizer steps taken. */
  step: number;
  /** Version of the weights (what the inference engine reports after loading them). */
  weightVersion: number;
  /** Model / run configuration (any JSON value). */
  config: unknown;
  /** Tokenizer `toJSON()` output (see `tokenizerFromJSON`), or null. */
  tokenizer: unknown;
  /** Named RNG states (e.g. `Rng.state()` of the sampler and the trainer). */
  rng: Record<string, number[]>;
  /** Anything else the trainer needs to resume exactly (data cursor, LR schedule, metrics …); any JSON value. */
  trainerState: unknown;
  model: TensorMap;
  /** AdamW first and second moments, keyed like `model`; null for weights-only checkpoints. */
  optimizer: { m: TensorMap; v: TensorMap } | null;
}

export interface LoadedCheckpoint extends Checkpoint {
  /** The directory actually read: `dir`, or an aside copy after a crash during a save. */
  path: string;
  /** True when `dir` was missing and the aside copy of an interrupted save was loaded. */
  recovered: boolean;
  manifest: CheckpointManifest;
}

const FileEntrySchema = z.object({
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  tensors: z.record(z.array(z.number().int().nonnegative())),
});
const ManifestSchema = z.object({
  format: z.literal(CHECKPOINT_FORMAT),
  formatVersion: z.number().int(),
  createdAt: z.string(),
  step: z.number().int().nonnegative(),
  weightVersion: z.number().int(),
  config: z.unknown(),
  tokenizer: z.unknown(),
  rng: z.record(z.array(z.number().int())),
  trainerState: z.unknown(),
  files: z.record(FileEntrySchema),
  checksum: z.object({ sha256: z.string(), fields: z.record(z.string()) }).optional(),
});
export type CheckpointManifest = z.infer<typeof ManifestSchema>;

/**
 * Protocol points reported to `onStep` (see the protocol above): after step 1, after step 2 (also
 * when there was no old checkpoint to move), after step 3, and after step 4 ('done').
 */
export type SaveStep = 'written' | 'old-moved-aside' | 'new-renamed-in' | 'done';

export interface SaveOptions {
  /**
   * Called after each protocol step. An exception it throws propagates at once with NO cleanup,
   * exactly as if the process died there: tests use it to model crashes between steps.
   */
  onStep?: (step: SaveStep, paths: { dir: string; tmp: string; aside: string }) => void | Promise<void>;
}

export interface LoadOptions {
  /** Shapes the model tensors must have (e.g. from the model's parameter layout); extra or missing names are errors. */
  expectShapes?: Record<string, readonly number[]>;
}

/** Temp and aside directories of saves in flight in this process (never treated as stale). */
const inFlight = new Set<string>();

/** Thrown by `onStep` hooks; marks an injected crash so save performs no cleanup. */
class InjectedCrash {
  constructor(readonly error: unknown) {}
}

/** `runs/<name>/checkpoints/step-000000123` style path of a step's checkpoint. */
export function checkpointPath(checkpointsDir: string, step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`checkpointPath: step must be a non-negative integer, got ${step}`);
  return join(checkpointsDir, `step-${String(step).padStart(9, '0')}`);
}

/** Save atomically (see the protocol at the top of this file). Creates parent directories. */
export async function saveCheckpoint(dir: string, ckpt: Checkpoint, opts: SaveOptions = {}): Promise<void> {
  validateForSave(dir, ckpt);
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${dir}.tmp-${tag}`;
  const aside = `${dir}.old-${tag}`;
  const step = async (s: SaveStep) => {
    if (!opts.onStep) return;
    try {
      await opts.onStep(s, { dir, tmp, aside });
    } catch (e) {
      throw new InjectedCrash(e);
    }
  };
  let movedAside = false;
  inFlight.add(tmp).add(aside);
  try {
    await writeCheckpointFiles(tmp, ckpt);
    await step('written');
    if (await pathExists(dir)) {
      await rename(dir, aside);
      movedAside = true;
      await fsyncDir(parent);
    }
    await step('old-moved-aside');
    await rename(tmp, dir);
    await fsyncDir(parent);
    await step('new-renamed-in');
  } catch (e) {
    inFlight.delete(tmp);
    inFlight.delete(aside);
    // An injected crash models a dead process: leave everything as it is (later saves clean up).
    if (e instanceof InjectedCrash) throw e.error;
    // A real failure: put things back as they were, then report it.
    if (movedAside && !(await pathExists(dir))) await rename(aside, dir).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new Error(`saveCheckpoint ${dir}: ${(e as Error).message}`, { cause: e });
  }
  if (movedAside) await rm(aside, { recursive: true, force: true }).catch(() => undefined);
  inFlight.delete(tmp);
  inFlight.delete(aside);
  await removeStaleCopies(dir);
  await opts.onStep?.('done', { dir, tmp, aside });
}

/**
 * Load and verify a checkpoint: manifest schema and version, file sizes, sha256 hashes, tensor
 * shapes against the manifest (and `expectShapes`), optimizer moments matching the weights.
 * If `dir` is missing because a save was interrupted between its renames, loads the aside copy.
 */
export async function loadCheckpoint(dir: string, opts: LoadOptions = {}): Promise<LoadedCheckpoint> {
  // A concurrent save may delete an aside copy or swap `dir` while we read: retry once from scratch.
  for (let attempt = 0; ; attempt++) {
    try {
      return await loadOnce(dir, opts);
    } catch (e) {
      if (attempt === 0 && (e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
  }
}

async function loadOnce(dir: string, opts: LoadOptions): Promise<LoadedCheckpoint> {
  if (await pathExists(dir)) return { ...(await readCheckpointDir(dir, dir, opts)), path: dir, recovered: false };
  const asides = await asideCopies(dir);
  if (asides.length === 0) {
    throw new Error(`checkpoint ${dir}: directory does not exist (and no ${basename(dir)}.old-* copy of an interrupted save was found)`);
  }
  const errors: string[] = [];
  for (const a of asides) {
    try {
      return { ...(await readCheckpointDir(a, dir, opts)), path: a, recovered: true };
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  throw new Error(`checkpoint ${dir}: directory does not exist and no aside copy is loadable: ${errors.join('; ')}`);
}

/** Step checkpoints (`step-<n>`) under a run's checkpoints directory, oldest first. Includes steps only recoverable from an aside copy. */
export async function listCheckpoints(checkpointsDir: string): Promise<{ step: number; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(checkpointsDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const steps = new Set<number>();
  for (const name of names) {
    const m = /^step-(\d+)(\.old-\d+-[0-9a-f]+)?$/.exec(name);
    if (m && (await pathExists(join(checkpointsDir, name, MANIFEST_FILE)))) steps.add(Number(m[1]));
  }
  return [...steps].sort((a, b) => a - b).map((step) => ({ step, path: checkpointPath(checkpointsDir, step) }));
}

/** Path of the highest-step checkpoint under `checkpointsDir` (pass it to loadCheckpoint), or null. */
export async function latestCheckpoint(checkpointsDir: string): Promise<string | null> {
  const all = await listCheckpoints(checkpointsDir);
  return all.length > 0 ? all[all.length - 1]!.path : null;
}

/** Delete all but the newest `keep` step checkpoints. Returns the deleted paths. */
export async function pruneCheckpoints(checkpointsDir: string, keep: number): Promise<string[]> {
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`pruneCheckpoints: keep must be an integer ≥ 1, got ${keep}`);
  const all = await listCheckpoints(checkpointsDir);
  const doomed = all.slice(0, Math.max(0, all.length - keep)).map((c) => c.path);
  for (const p of doomed) {
    await rm(p, { recursive: true, force: true });
    for (const a of await asideCopies(p)) await rm(a, { recursive: true, force: true });
  }
  return doomed;
}

// ---------------------------------------------------------------------------------------------

function validateForSave(dir: string, c: Checkpoint): void {
  const fail = (msg: string): never => {
    throw new Error(`saveCheckpoint ${dir}: ${msg}`);
  };
  if (!Number.isSafeInteger(c.step) || c.step < 0) fail(`step must be a non-negative integer, got ${c.step}`);
  if (!Number.isSafeInteger(c.weightVersion)) fail(`weightVersion must be an integer, got ${c.weightVersion}`);
  for (const [k, s] of Object.entries(c.rng)) if (!s.every((x) => Number.isSafeInteger(x))) fail(`rng state '${k}' must be integers`);
  for (const field of ['config', 'tokenizer', 'trainerState'] as const) {
    const problem = jsonProblem(c[field], field);
    if (problem) fail(`${problem} (checkpoint fields must be plain JSON)`);
  }
  if (Object.keys(c.model).length === 0) fail('model has no tensors');
  const badModel = nonFiniteTensor(c.model);
  if (badModel) fail(`model ${badModel}; refusing to save non-finite weights (the training run diverged or the weights were corrupted)`);
  for (const which of ['m', 'v'] as const) {
    const bad = c.optimizer ? nonFiniteTensor(c.optimizer[which]) : null;
    if (bad) fail(`optimizer.${which} ${bad}; refusing to save non-finite optimizer moments`);
  }
  if (c.optimizer) {
    // Moments cover the trained tensors: every model tensor (full fine-tuning) or a subset (LoRA:
    // the adapter's); m and v cover the same ones, each with its parameter's shape.
    const trained = new Set([...Object.keys(c.optimizer.m), ...Object.keys(c.optimizer.v)]);
    if (trained.size === 0) fail('optimizer has no moments (omit the optimizer instead)');
    for (const which of ['m', 'v'] as const) {
      const mom = c.optimizer[which];
      for (const name of trained) {
        const o = mom[name], t = c.model[name];
        if (!t) fail(`optimizer.${which} has tensor '${name}' that is not a model parameter`);
        if (!o) fail(`optimizer.${which} has no tensor for parameter '${name}'`);
        if (!sameShape(o!.shape, t!.shape)) fail(`optimizer.${which}['${name}'] has shape [${o!.shape}] but the parameter has [${t!.shape}]`);
      }
    }
  }
}

async function writeCheckpointFiles(tmp: string, c: Checkpoint): Promise<void> {
  await mkdir(tmp);
  const files: CheckpointManifest['files'] = {};
  const put = async (name: string, tensors: TensorMap, kind: string) => {
    const buf = writeSafetensors(tensors, { format: CHECKPOINT_FORMAT, kind });
    await writeFileSynced(join(tmp, name), buf);
    files[name] = { bytes: buf.length, sha256: sha256(buf), tensors: shapesOf(tensors) };
  };
  await put(MODEL_FILE, c.model, 'model');
  if (c.optimizer) {
    const moments: TensorMap = {};
    for (const [name, t] of Object.entries(c.optimizer.m)) moments[`m.${name}`] = t;
    for (const [name, t] of Object.entries(c.optimizer.v)) moments[`v.${name}`] = t;
    await put(OPTIMIZER_FILE, moments, 'optimizer');
  }
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    formatVersion: CHECKPOINT_FORMAT_VERSION,
    createdAt: new Date().toISOString(),
    step: c.step,
    weightVersion: c.weightVersion,
    config: c.config,
    tokenizer: c.tokenizer,
    rng: c.rng,
    trainerState: c.trainerState,
    files,
  };
  // Hash what a reader will parse back (validateForSave made sure the fields are plain JSON).
  manifest.checksum = manifestChecksum(JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>);
  // The manifest goes last: a directory with a manifest has all its files.
  await writeFileSynced(join(tmp, MANIFEST_FILE), Buffer.from(JSON.stringify(manifest, null, 1) + '\n', 'utf8'));
  await fsyncDir(tmp);
}

async function readCheckpointDir(path: string, name: string, opts: LoadOptions): Promise<Omit<LoadedCheckpoint, 'path' | 'recovered'>> {
  const where = path === name ? `checkpoint ${name}` : `checkpoint ${name} (aside copy ${path})`;
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`);
  };
  let manifestText: string;
  try {
    manifestText = await readFile(join(path, MANIFEST_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && (await pathExists(path))) fail(`${MANIFEST_FILE} is missing (the checkpoint was not completely written)`);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(manifestText);
  } catch (e) {
    fail(`${MANIFEST_FILE} is not valid JSON (${(e as Error).message}); the file is corrupt`);
  }
  const fmt = raw as { format?: unknown; formatVersion?: unknown } | null;
  if (fmt?.format !== CHECKPOINT_FORMAT) fail(`${MANIFEST_FILE} is not an agentrl checkpoint manifest (format ${JSON.stringify(fmt?.format)})`);
  if (typeof fmt?.formatVersion === 'number' && fmt.formatVersion > CHECKPOINT_FORMAT_VERSION) {
    fail(`format version ${fmt.formatVersion} is newer than this build reads (${CHECKPOINT_FORMAT_VERSION}); upgrade agentrl`);
  }
  for (const field of ['config', 'tokenizer', 'trainerState']) {
    if (!(field in (raw as object))) fail(`${MANIFEST_FILE} is invalid: ${field}: Required`);
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) fail(`${MANIFEST_FILE} is invalid: ${parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const manifest = parsed.data!;
  const edited = checksumProblem(raw as Record<string, unknown>);
  if (edited) fail(`${MANIFEST_FILE} ${edited}; refusing to load it (an edited manifest breaks exact resume)`);
  if (!manifest.files[MODEL_FILE]) fail(`${MANIFEST_FILE} lists no ${MODEL_FILE}`);

  const readTensors = async (file: string): Promise<TensorMap> => {
    const entry = manifest.files[file]!;
    let buf: Buffer;
    try {
      buf = await readFile(join(path, file));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && (await pathExists(path))) fail(`${file} is missing`);
      throw e;
    }
    if (buf.length < entry.bytes) fail(`${file} is truncated (manifest says ${entry.bytes} bytes, file has ${buf.length})`);
    if (buf.length > entry.bytes) fail(`${file} is too long (manifest says ${entry.bytes} bytes, file has ${buf.length})`);
    const digest = sha256(buf);
    if (digest !== entry.sha256) fail(`${file} is corrupt (sha256 ${digest} does not match the manifest's ${entry.sha256})`);
    let tensors: TensorMap;
    try {
      tensors = readSafetensors(buf, file).tensors;
    } catch (e) {
      return fail((e as Error).message);
    }
    const problem = shapeMismatch(shapesOf(tensors), entry.tensors);
    if (problem) fail(`${file} does not match the manifest: ${problem}`);
    const bad = nonFiniteTensor(tensors);
    if (bad) fail(`${file}: ${bad}; refusing to load non-finite weights`);
    return tensors;
  };

  const model = await readTensors(MODEL_FILE);
  if (opts.expectShapes) {
    const problem = shapeMismatch(shapesOf(model), opts.expectShapes);
    if (problem) fail(`${MODEL_FILE} does not fit the expected parameter layout: ${problem}`);
  }
  let optimizer: Checkpoint['optimizer'] = null;
  if (manifest.files[OPTIMIZER_FILE]) {
    const moments = await readTensors(OPTIMIZER_FILE);
    optimizer = { m: {}, v: {} };
    for (const [key, t] of Object.entries(moments)) {
      const m = /^([mv])\.(.+)$/.exec(key);
      if (!m) fail(`${OPTIMIZER_FILE} has tensor '${key}', expected names 'm.<param>' or 'v.<param>'`);
      optimizer[m![1] as 'm' | 'v'][m![2]!] = t;
    }
    // Moments of the trained tensors (all of them, or LoRA's adapter): same names in m and v, shapes of the weights.
    const weights = shapesOf(model), names = Object.keys(optimizer.m);
    for (const which of ['m', 'v'] as const) {
      const subset = Object.fromEntries(names.filter((n) => n in weights).map((n) => [n, weights[n]!]));
      const problem = shapeMismatch(shapesOf(optimizer[which]), names.length === Object.keys(weights).length ? weights : subset);
      if (problem) fail(`${OPTIMIZER_FILE} moments '${which}' do not match the weights: ${problem}`);
    }
  }
  return {
    step: manifest.step,
    weightVersion: manifest.weightVersion,
    config: manifest.config,
    tokenizer: manifest.tokenizer,
    rng: manifest.rng,
    trainerState: manifest.trainerState,
    model,
    optimizer,
    manifest,
  };
}

/** Where a value stops being plain JSON that round-trips through JSON.stringify/parse, or null. */
function jsonProblem(x: unknown, path: string): string | null {
  if (x === null || typeof x === 'string' || typeof x === 'boolean') return null;
  if (typeof x === 'number') return Number.isFinite(x) ? null : `${path} is ${x}`;
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) {
      const p = jsonProblem(x[i], `${path}[${i}]`);
      if (p) return p;
    }
    return null;
  }
  if (typeof x === 'object') {
    const proto = Object.getPrototypeOf(x);
    if (proto !== Object.prototype && proto !== null) return `${path} is a ${proto?.constructor?.name ?? 'non-plain'} object`;
    for (const [k, v] of Object.entries(x)) {
      const p = jsonProblem(v, `${path}.${k}`);
      if (p) return p;
    }
    return null;
  }
  return `${path} is ${typeof x}`;
}

/** 'tensor 'wte' holds NaN at [3, 1]' for the first non-finite value of a float tensor, or null. */
function nonFiniteTensor(t: TensorMap): string | null {
  for (const [name, x] of Object.entries(t)) {
    const at = nonFiniteAt(x);
    if (at) return `tensor '${name}' ${at}`;
  }
  return null;
}

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  if (x !== null && typeof x === 'object') {
    const keys = Object.keys(x).filter((k) => (x as Record<string, unknown>)[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((x as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(x);
}

/** Paths the per-field checksums cover: each top-level field, and each key of an object-valued one. */
function checksumFields(m: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'checksum' || v === undefined) continue;
    out[k] = v;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) if (v2 !== undefined) out[`${k}.${k2}`] = v2;
    }
  }
  return out;
}

/** The `checksum` field of a manifest (given without it, or it is ignored). */
function manifestChecksum(m: Record<string, unknown>): { sha256: string; fields: Record<string, string> } {
  const fields: Record<string, string> = {};
  for (const [path, v] of Object.entries(checksumFields(m))) fields[path] = sha256(Buffer.from(canonicalJson(v), 'utf8'));
  const { checksum: _ignored, ...rest } = m;
  return { sha256: sha256(Buffer.from(canonicalJson(rest), 'utf8')), fields };
}

/**
 * Why a parsed manifest does not match its own checksum ("does not match its checksum (field
 * 'step' changed …)"), or null when it matches or has no checksum (manifests of older versions).
 */
function checksumProblem(raw: Record<string, unknown>): string | null {
  const stored = raw.checksum as { sha256?: unknown; fields?: unknown } | undefined;
  if (stored === undefined) return null; // written before manifests had checksums: nothing to verify
  if (typeof stored !== 'object' || stored === null || typeof stored.sha256 !== 'string' || typeof stored.fields !== 'object' || stored.fields === null) {
    return 'has a malformed checksum field (expected { sha256, fields })';
  }
  const now = manifestChecksum(raw);
  if (now.sha256 === stored.sha256) return null;
  const want = stored.fields as Record<string, unknown>;
  // Name the most specific path that changed (config.optimizer rather than config).
  const changed = Object.keys(now.fields).filter((p) => p in want && want[p] !== now.fields[p]);
  const added = Object.keys(now.fields).filter((p) => !(p in want) && !(p.includes('.') && !(p.split('.')[0]! in want)));
  const removed = Object.keys(want).filter((p) => !(p in now.fields));
  const specific = (ps: string[]) => ps.filter((p) => !ps.some((q) => q !== p && q.startsWith(`${p}.`)));
  const parts: string[] = [];
  for (const [paths, verb] of [[changed, 'changed'], [added, 'added'], [removed, 'removed']] as const) {
    const named = specific(paths);
    if (named.length) parts.push(`field${named.length > 1 ? 's' : ''} ${named.map((p) => `'${p}'`).join(', ')} ${verb}`);
  }
  const what = parts.length ? parts.join('; ') : 'the checksum itself was changed';
  return `does not match its checksum (${what} after the checkpoint was written)`;
}

function shapesOf(t: TensorMap): Record<string, number[]> {
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, v.shape]));
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** First difference between two name → shape maps, or null. */
function shapeMismatch(actual: Record<string, readonly number[]>, expected: Record<string, readonly number[]>): string | null {
  for (const [name, shape] of Object.entries(expected)) {
    const got = actual[name];
    if (!got) return `tensor '${name}' is missing`;
    if (!sameShape(got, shape)) return `tensor '${name}' has shape [${got.join(', ')}], expected [${shape.join(', ')}]`;
  }
  for (const name of Object.keys(actual)) if (!(name in expected)) return `unexpected tensor '${name}'`;
  return null;
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Whether `path` exists (ENOENT → false; other errors, e.g. permissions, are thrown). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Create `path` (it must not exist) with `data`, fsynced before returning. */
export async function writeFileSynced(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory so renames/creations in it are durable. Some platforms cannot; that is not fatal. */
export async function fsyncDir(path: string): Promise<void> {
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

/** Aside copies `<dir>.old-<pid>-<rand>` that hold a manifest, newest (by manifest step, then mtime) first. */
async function asideCopies(dir: string): Promise<string[]> {
  const parent = dirname(dir), base = basename(dir);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const found: { path: string; step: number; mtime: number }[] = [];
  for (const name of names) {
    if (!isCopyOf(name, base, 'old')) continue;
    const p = join(parent, name);
    try {
      const text = await readFile(join(p, MANIFEST_FILE), 'utf8');
      const step = Number((JSON.parse(text) as { step?: unknown }).step);
      found.push({ path: p, step: Number.isFinite(step) ? step : -1, mtime: (await stat(p)).mtimeMs });
    } catch {
      // No readable manifest: not a complete copy.
    }
  }
  return found.sort((a, b) => b.step - a.step || b.mtime - a.mtime).map((f) => f.path);
}

function isCopyOf(name: string, base: string, kind: 'tmp' | 'old'): boolean {
  return name.startsWith(`${base}.${kind}-`) && /^\d+-[0-9a-f]+$/.test(name.slice(base.length + kind.length + 2));
}

/** Remove temp and aside copies of `dir` whose writing process is gone (left by crashes). */
async function removeStaleCopies(dir: string): Promise<void> {
  const parent = dirname(dir), base = basename(dir);
  for (const name of await readdir(parent)) {
    const kind = isCopyOf(name, base, 'tmp') ? 'tmp' : isCopyOf(name, base, 'old') ? 'old' : null;
    if (!kind) continue;
    const path = join(parent, name);
    const pid = Number(name.slice(base.length + kind.length + 2).split('-')[0]);
    const stale = pid === process.pid ? !inFlight.has(path) : !processAlive(pid);
    if (stale) await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
