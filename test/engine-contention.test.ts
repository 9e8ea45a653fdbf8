/**
 * The native kernels on a busy machine: while other threads keep the cores busy, the helping thread
 * pool (native/thread_pool.h) still runs every item exactly once and the results are bit-identical to
 * a quiet run with the same thread count (who runs an item never changes how the work is cut).
 * Speed under contention is measured by `npm run bench:engine -- --contend 1`, not here.
 */
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNativeBackend, nativeInfo, nativeLoadError } from '../src/engine/native.ts';
import { Transformer, type ModelConfigInput } from '../src/engine/model.ts';
import { BuiltinTrainer, sftLoss } from '../src/train/builtin-trainer.ts';
import type { Sample } from '../src/core/types.ts';
import { Rng } from '../src/core/rng.ts';

const MODEL: ModelConfigInput = { vocabSize: 64, contextLength: 48, nLayer: 2, nHead: 4, nEmbd: 64, positions: 'rope', norm: 'rmsnorm' };

function samples(n: number, seed: number): Sample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const ids = Array.from({ length: 40 }, () => rng.int(64));
    return { seq: { ids, logprobs: ids.map(() => 0), versions: ids.map(() => -1), mask: ids.map((_, i) => (i === 0 ? 0 : 1)), source: ids.map(() => 0 as const) }, reward: 0, keys: {} };
  });
}

/** Weights after `steps` train steps on two threads, starting from the same seed. */
function train(steps: number): Float32Array {
  const be = loadNativeBackend({ threads: 2 })!;
  const trainer = new BuiltinTrainer(new Transformer(MODEL, be, 7), { lr: 3e-3 });
  for (let s = 0; s < steps; s++) trainer.trainStep(samples(16, s), sftLoss);
  return trainer.model.params;
}

/** Busy threads of this process: each spins on arithmetic until stopped. */
function startBusy(n: number): { ready: Promise<unknown[]>; stop: () => Promise<void> } {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const code = `const { workerData, parentPort } = require('node:worker_threads'); const stop = new Int32Array(workerData); parentPort.postMessage('busy'); let x = 0; while (Atomics.load(stop, 0) === 0) { for (let i = 1; i < 50000; i++) x += Math.sqrt(i); }`;
  const workers = Array.from({ length: n }, () => new Worker(code, { eval: true, workerData: flag.buffer }));
  return {
    ready: Promise.all(workers.map((w) => new Promise((r) => w.once('message', r)))),
    stop: async () => { Atomics.store(flag, 0, 1); await Promise.all(workers.map((w) => w.terminate())); },
  };
}

const native = nativeInfo();
if (!native) console.warn(`engine-contention: native addon not built (${nativeLoadError()}); these tests need it`);

describe.runIf(native && native.cpus >= 2)('native kernels under CPU contention', () => {
  let quiet: Float32Array;
  beforeAll(() => { quiet = Float32Array.from(train(3)); });

  let busy: ReturnType<typeof startBusy> | null = null;
  afterAll(async () => { await busy?.stop(); });

  it('train steps with two busy threads beside them give the quiet run\'s weights bit for bit', async () => {
    busy = startBusy(2);
    await busy.ready;
    const loaded = train(3);
    expect(Buffer.from(loaded.buffer, loaded.byteOffset, loaded.byteLength).equals(Buffer.from(quiet.buffer, quiet.byteOffset, quiet.byteLength))).toBe(true);
  });

  it('many small parallel jobs in a row lose no item (sums of squares against a serial sum)', () => {
    const be = loadNativeBackend({ threads: 2 })!;
    const serial = loadNativeBackend({ threads: 1 })!;
    const rng = new Rng(3);
    const data = Float32Array.from({ length: 120_000 }, () => rng.normal());
    for (let k = 0; k < 300; k++) {
      const n = 40_000 + rng.int(60_000); // above the size that goes parallel
      const x = data.subarray(k % 20, k % 20 + n);
      const expected = serial.sumSquares(x, n);
      expect(Math.abs(be.sumSquares(x, n) - expected) / expected).toBeLessThan(1e-12);
      const y = new Float32Array(n);
      be.add(y, x, x, n);
      for (const i of [0, n >> 1, n - 1]) expect(y[i]).toBe(2 * x[i]!);
    }
  });
});
