import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { f32Tensor, readSafetensors, readSafetensorsFile, writeSafetensors, type Tensor, type TensorMap } from '../src/engine/safetensors.ts';
import {
  checkpointPath, latestCheckpoint, listCheckpoints, loadCheckpoint, pruneCheckpoints, saveCheckpoint, type Checkpoint, type SaveStep,
} from '../src/engine/checkpoint.ts';
import { WordTokenizer, tokenizerFromJSON } from '../src/engine/tokenizer.ts';
import { Rng } from '../src/core/rng.ts';
import { assertConsistent, markerCheckpoint } from './fixtures/checkpoint-marker.ts';

const ROOT = dirname(import.meta.dirname);
const WRITER = join(import.meta.dirname, 'fixtures', 'checkpoint-writer.ts');
const scratch = mkdtempSync(join(tmpdir(), 'agentrl-ckpt-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(scratch, `case-${n++}`);

function tensorsFixture(): TensorMap {
  return {
    'wte': f32Tensor([3, 2], Float32Array.from([1, -2, 3.5, 0, -0, 1e-30])),
    'scalar': f32Tensor([], Float32Array.from([7])),
    'empty': f32Tensor([0, 4]),
    'ids': { dtype: 'I32', shape: [3], data: Int32Array.from([-1, 0, 2147483647]) },
    'mask': { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 255, 3, 4]) },
  };
}

/** The header JSON of a safetensors buffer, and where its data starts. */
function headerOf(buf: Buffer): { json: Record<string, unknown>; n: number } {
  const n = Number(buf.readBigUInt64LE(0));
  return { json: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), n };
}

/** Rebuild a buffer with an edited header (padded to keep the data where it was). */
function withHeader(buf: Buffer, edit: (h: Record<string, any>) => void): Buffer {
  const { json, n } = headerOf(buf);
  edit(json);
  const text = Buffer.from(JSON.stringify(json));
  const len = Math.max(n, Math.ceil((8 + text.length) / 8) * 8 - 8);
  const head = Buffer.alloc(8 + len, 0x20);
  head.writeBigUInt64LE(BigInt(len), 0);
  text.copy(head, 8);
  return Buffer.concat([head, buf.subarray(8 + n)]);
}

describe('safetensors', () => {
  it('round-trips F32/I32/U8 tensors, scalars, empty tensors and metadata', () => {
    const t = tensorsFixture();
    const buf = writeSafetensors(t, { format: 'pt', note: 'ünïcode' });
    const back = readSafetensors(buf);
    expect(back.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(t).sort());
    for (const [k, v] of Object.entries(t)) {
      expect(back.tensors[k]!.dtype).toBe(v.dtype);
      expect(back.tensors[k]!.shape).toEqual(v.shape);
      expect(Array.from(back.tensors[k]!.data)).toEqual(Array.from(v.data));
    }
    expect(Object.is(back.tensors.wte!.data[4], -0)).toBe(true);
  });

  it('pads the header with spaces to 8-byte alignment and aligns every tensor to its element size', () => {
    const buf = writeSafetensors(tensorsFixture());
    const { json, n } = headerOf(buf);
    expect((8 + n) % 8).toBe(0);
    const raw = buf.subarray(8, 8 + n).toString('utf8');
    expect(raw).toMatch(/^\{.*\} *$/);
    for (const [name, e] of Object.entries(json)) {
      const { dtype, data_offsets: [b] } = e as { dtype: string; data_offsets: number[] };
      expect(b! % (dtype === 'U8' ? 1 : 4), name).toBe(0);
    }
    expect(json.__metadata__).toBeUndefined();
  });

  it('reads a file written by another writer (unpadded header, metadata last, unsorted offsets)', () => {
    const header = '{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}';
    const data = Buffer.alloc(12);
    data.writeInt32LE(-5, 0); data.writeInt32LE(6, 4); data.writeFloatLE(0.5, 8);
    const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
    const back = readSafetensors(Buffer.concat([len, Buffer.from(header), data]));
    expect(Array.from(back.tensors.a!.data)).toEqual([-5, 6]);
    expect(Array.from(back.tensors.b!.data)).toEqual([0.5]);
    expect(back.metadata).toEqual({ k: 'v' });
  });

  it('round-trips random float tensors exactly, from unaligned buffers too (fast-check)', () => {
    const tensorArb = fc.array(fc.float({ noNaN: true }), { maxLength: 50 }).map((xs) => f32Tensor([xs.length], Float32Array.from(xs)));
    fc.assert(fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }).filter((s) => s !== '__metadata__'), tensorArb, { maxKeys: 6 }), fc.nat(7), (tensors, shift) => {
      const buf = writeSafetensors(tensors);
      const unaligned = Buffer.alloc(buf.length + shift);
      buf.copy(unaligned, shift);
      const back = readSafetensors(unaligned.subarray(shift));
      for (const [k, v] of Object.entries(tensors)) expect(Array.from(back.tensors[k]!.data)).toEqual(Array.from(v.data));
    }), { numRuns: 150 });
  });

  it('refuses to write inconsistent tensors', () => {
    expect(() => writeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/'x' has 2 elements but shape \[3\] needs 3/);
    expect(() => writeSafetensors({ x: { dtype: 'F64' as 'F32', shape: [1], data: new Float32Array(1) } })).toThrow(/unsupported dtype F64/);
    expect(() => writeSafetensors({ __metadata__: f32Tensor([1]) })).toThrow(/cannot be a tensor name/);
    expect(() => writeSafetensors({ x: f32Tensor([1]) }, { k: 1 as unknown as string })).toThrow(/metadata value of 'k' must be a string/);
  });

  describe('corruption is reported clearly, naming the file', () => {
    const good = writeSafetensors(tensorsFixture(), { format: 'pt' });
    const read = (b: Buffer) => () => readSafetensors(b, 'weights.safetensors');

    it('truncated anywhere', () => {
      const { n } = headerOf(good);
      expect(read(good.subarray(0, 5))).toThrow(/^weights\.safetensors: is truncated \(5 bytes/);
      expect(read(good.subarray(0, 8 + n - 1))).toThrow(/weights\.safetensors: is truncated \(header says its JSON header is \d+ bytes/);
      expect(read(good.subarray(0, good.length - 1))).toThrow(new RegExp(`weights\\.safetensors: is truncated \\(header says ${good.length} bytes, file has ${good.length - 1}\\)`));
      for (let len = 0; len < good.length; len++) expect(read(good.subarray(0, len))).toThrow(/weights\.safetensors: /);
    });

    it('header length beyond the file or implausibly large', () => {
      const b = Buffer.from(good); b.writeBigUInt64LE(BigInt(good.length), 0);
      expect(read(b)).toThrow(/is truncated \(header says its JSON header is/);
      b.writeBigUInt64LE(0xffffffffffffn, 0);
      expect(read(b)).toThrow(/header length \d+ is implausible/);
    });

    it('a header that is not JSON (flipped bytes)', () => {
      const b = Buffer.from(good); b[8] = 0x5b; // '{' -> '['
      expect(read(b)).toThrow(/header is not a JSON object/);
      const c = Buffer.from(good); c[good.indexOf(':', 8)] = 0x3b; // ':' -> ';'
      expect(read(c)).toThrow(/header is not valid JSON \(/);
      const d = Buffer.from(good); d[good.indexOf('dtype', 8)] = 0x44; // 'dtype' -> 'Dtype': still JSON, but wrong
      expect(read(d)).toThrow(/tensor '\w+' has no dtype/);
    });

    it('offsets that overlap, leave gaps, point past the data, or disagree with shape × dtype', () => {
      const edit = (f: (h: Record<string, any>) => void) => read(withHeader(good, f));
      expect(edit((h) => { h.wte.data_offsets = [h.wte.data_offsets[0] + 4, h.wte.data_offsets[1] + 4]; })).toThrow(/overlap|gap/);
      expect(edit((h) => { h.wte.shape = [2, 2]; })).toThrow(/tensor 'wte': data_offsets \[\d+, \d+\] span 24 bytes but F32 shape \[2, 2\] needs 16/);
      expect(edit((h) => { h.mask.data_offsets = [h.mask.data_offsets[0] + 100, h.mask.data_offsets[1] + 100]; })).toThrow(/gap of 100 bytes before tensor 'mask'|is truncated/);
      expect(edit((h) => { h.ids.data_offsets = [8, 4]; })).toThrow(/end before they begin/);
      expect(edit((h) => { h.ids.data_offsets = [-4, 8]; })).toThrow(/data_offsets must be \[begin, end\]/);
      expect(edit((h) => { h.ids.shape = [1.5]; })).toThrow(/shape must be an array of non-negative integers/);
      // Two tensors claiming the same bytes.
      expect(edit((h) => { h.twin = { ...h.wte }; })).toThrow(/tensors '(wte|twin)' and '(wte|twin)' overlap/);
      // A file longer than its header says.
      expect(read(Buffer.concat([good, Buffer.alloc(4)]))).toThrow(/4 unexpected bytes after the last tensor/);
    });

    it('unknown dtypes and bad metadata', () => {
      expect(read(withHeader(good, (h) => { h.wte.dtype = 'BF16'; }))).toThrow(/tensor 'wte' has unsupported dtype "BF16" \(supported: F32, I32, U8\)/);
      expect(read(withHeader(good, (h) => { h.__metadata__ = { k: 3 }; }))).toThrow(/__metadata__\.k must be a string/);
      expect(read(withHeader(good, (h) => { h.wte = 7; }))).toThrow(/tensor 'wte': header entry must be an object/);
    });

    it('readSafetensorsFile names the path', async () => {
      const p = join(scratch, 'cut.safetensors');
      writeFileSync(p, good.subarray(0, good.length - 3));
      await expect(readSafetensorsFile(p)).rejects.toThrow(`${p}: is truncated`);
    });
  });
});

function sampleCheckpoint(step: number): Checkpoint {
  const tok = WordTokenizer.fromVocabulary(['BET', 'CHECK']);
  const rng = new Rng(step);
  const w = (shape: number[]) => { const t = f32Tensor(shape); for (let i = 0; i < t.data.length; i++) t.data[i] = rng.normal(); return t; };
  const model = { wte: w([tok.vocabSize, 4]), 'h0.attn.qkv.w': w([12, 4]), 'lnf.w': w([4]) };
  const like = (m: TensorMap) => Object.fromEntries(Object.entries(m).map(([k, t]) => [k, w(t.shape)]));
  return {
    step, weightVersion: step + 100,
    config: { nLayer: 1, nEmbd: 4, name: 'tiny', nested: [1, { a: null }] },
    tokenizer: tok.toJSON(),
    rng: { sampler: rng.state(), trainer: new Rng(step + 1).state() },
    trainerState: { dataCursor: 17, lr: 3e-4, history: [0.5, 0.25] },
    model, optimizer: { m: like(model), v: like(model) },
  };
}

function expectSameCheckpoint(a: Checkpoint, b: Checkpoint): void {
  for (const k of ['step', 'weightVersion', 'config', 'tokenizer', 'rng', 'trainerState'] as const) expect(a[k], k).toEqual(b[k]);
  const same = (x: TensorMap, y: TensorMap) => {
    expect(Object.keys(x).sort()).toEqual(Object.keys(y).sort());
    for (const [k, t] of Object.entries(x)) {
      expect(y[k]!.shape).toEqual(t.shape);
      expect(Array.from(y[k]!.data), k).toEqual(Array.from(t.data));
    }
  };
  same(a.model, b.model);
  expect(a.optimizer === null).toBe(b.optimizer === null);
  if (a.optimizer && b.optimizer) { same(a.optimizer.m, b.optimizer.m); same(a.optimizer.v, b.optimizer.v); }
}

describe('checkpoints', () => {
  let dir: string;
  beforeEach(() => { dir = freshDir(); });

  it('round-trips everything, and the tokenizer and RNG resume exactly', async () => {
    const c = sampleCheckpoint(5);
    await saveCheckpoint(dir, c);
    expect(readdirSync(dir).sort()).toEqual(['manifest.json', 'model.safetensors', 'optimizer.safetensors']);
    const back = await loadCheckpoint(dir, { expectShapes: Object.fromEntries(Object.entries(c.model).map(([k, t]) => [k, t.shape])) });
    expectSameCheckpoint(c, back);
    expect(back.recovered).toBe(false);
    expect(back.path).toBe(dir);
    expect(back.manifest.formatVersion).toBe(1);
    const tok = tokenizerFromJSON(back.tokenizer);
    expect(tok.encode('<action> BET </action>')).toEqual(WordTokenizer.fromJSON(c.tokenizer).encode('<action> BET </action>'));
    expect(new Rng(back.rng.sampler!).nextU32()).toBe(new Rng(c.rng.sampler!).nextU32());
    // No temp or aside directories are left behind.
    expect(readdirSync(dirname(dir)).filter((f) => f.startsWith(basename(dir)))).toEqual([basename(dir)]);
  });

  it('saves weights-only checkpoints, and overwrites an existing checkpoint in place', async () => {
    await saveCheckpoint(dir, sampleCheckpoint(1));
    const c2 = { ...sampleCheckpoint(2), optimizer: null };
    await saveCheckpoint(dir, c2);
    const back = await loadCheckpoint(dir);
    expectSameCheckpoint(c2, back);
    expect(existsSync(join(dir, 'optimizer.safetensors'))).toBe(false);
    expect(readdirSync(dirname(dir)).filter((f) => f.startsWith(basename(dir)))).toEqual([basename(dir)]);
  });

  it('validates what it is asked to save', async () => {
    const c = sampleCheckpoint(1);
    await expect(saveCheckpoint(dir, { ...c, config: { f: () => 1 } })).rejects.toThrow(/config\.f is function/);
    await expect(saveCheckpoint(dir, { ...c, trainerState: { x: NaN } })).rejects.toThrow(/trainerState\.x is NaN/);
    await expect(saveCheckpoint(dir, { ...c, trainerState: { x: new Float32Array(1) } })).rejects.toThrow(/trainerState\.x is a Float32Array object/);
    await expect(saveCheckpoint(dir, { ...c, optimizer: { m: c.optimizer!.m, v: { ...c.optimizer!.v, wte: f32Tensor([1]) } } })).rejects.toThrow(/optimizer\.v\['wte'\] has shape \[1\]/);
    await expect(saveCheckpoint(dir, { ...c, optimizer: { m: {}, v: c.optimizer!.v } })).rejects.toThrow(/optimizer\.m has no tensor for parameter/);
    await expect(saveCheckpoint(dir, { ...c, step: -1 })).rejects.toThrow(/step must be a non-negative integer/);
    expect(existsSync(dir)).toBe(false);
  });

  describe('loading reports corrupt or incomplete checkpoints clearly', () => {
    const corrupt = async (f: (dir: string) => void) => {
      const d = freshDir();
      await saveCheckpoint(d, sampleCheckpoint(3));
      f(d);
      return loadCheckpoint(d);
    };
    const model = (d: string) => join(d, 'model.safetensors');

    it('truncated, extended or bit-flipped weight files', async () => {
      await expect(corrupt((d) => { const b = readFileSync(model(d)); writeFileSync(model(d), b.subarray(0, 100)); }))
        .rejects.toThrow(/^checkpoint .*case-\d+: model\.safetensors is truncated \(manifest says \d+ bytes, file has 100\)$/);
      await expect(corrupt((d) => { writeFileSync(model(d), Buffer.concat([readFileSync(model(d)), Buffer.from('xx')])); }))
        .rejects.toThrow(/model\.safetensors is too long/);
      await expect(corrupt((d) => { const b = readFileSync(model(d)); b[b.length - 3]! ^= 0x10; writeFileSync(model(d), b); }))
        .rejects.toThrow(/model\.safetensors is corrupt \(sha256 [0-9a-f]{64} does not match/);
      await expect(corrupt((d) => { const p = join(d, 'optimizer.safetensors'); const b = readFileSync(p); b[20]! ^= 1; writeFileSync(p, b); }))
        .rejects.toThrow(/optimizer\.safetensors is corrupt/);
    });

    it('missing files and bad manifests', async () => {
      await expect(corrupt((d) => rmSync(model(d)))).rejects.toThrow(/model\.safetensors is missing/);
      await expect(corrupt((d) => rmSync(join(d, 'manifest.json')))).rejects.toThrow(/manifest\.json is missing \(the checkpoint was not completely written\)/);
      await expect(corrupt((d) => writeFileSync(join(d, 'manifest.json'), '{"format": "agentrl-checkp'))).rejects.toThrow(/manifest\.json is not valid JSON/);
      const editManifest = (f: (m: any) => void) => (d: string) => {
        const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')); f(m); writeFileSync(join(d, 'manifest.json'), JSON.stringify(m));
      };
      await expect(corrupt(editManifest((m) => { m.formatVersion = 9; }))).rejects.toThrow(/format version 9 is newer than this build reads \(1\)/);
      await expect(corrupt(editManifest((m) => { m.format = 'other'; }))).rejects.toThrow(/not an agentrl checkpoint manifest/);
      await expect(corrupt(editManifest((m) => { delete m.step; }))).rejects.toThrow(/manifest\.json is invalid: step: Required/);
      await expect(corrupt(editManifest((m) => { delete m.trainerState; }))).rejects.toThrow(/manifest\.json is invalid: trainerState: Required/);
      // An edited manifest is refused by its checksum; one without a checksum (older manifests) by the file check.
      await expect(corrupt(editManifest((m) => { m.files['model.safetensors'].tensors.wte = [1, 1]; })))
        .rejects.toThrow(/manifest\.json does not match its checksum \(field 'files\.model\.safetensors' changed after the checkpoint was written\)/);
      await expect(corrupt(editManifest((m) => { m.files['model.safetensors'].tensors.wte = [1, 1]; delete m.checksum; })))
        .rejects.toThrow(/model\.safetensors does not match the manifest: tensor 'wte' has shape \[\d+, 4\], expected \[1, 1\]/);
      await expect(loadCheckpoint(join(scratch, 'never-written'))).rejects.toThrow(/never-written: directory does not exist/);
    });

    it('weights that do not fit the expected layout', async () => {
      const d = freshDir();
      await saveCheckpoint(d, sampleCheckpoint(3));
      await expect(loadCheckpoint(d, { expectShapes: { wte: [15, 8], 'h0.attn.qkv.w': [12, 4], 'lnf.w': [4] } })).rejects.toThrow(/does not fit the expected parameter layout: tensor 'wte' has shape \[\d+, 4\], expected \[15, 8\]/);
      await expect(loadCheckpoint(d, { expectShapes: { wte: [18, 4] } })).rejects.toThrow(/unexpected tensor|has shape/);
    });
  });

  describe('non-finite weights are refused at save and at load, naming the tensor', () => {
    it('save: a NaN or infinite weight or moment', async () => {
      const c = sampleCheckpoint(1);
      c.model.wte!.data[5] = NaN; // wte is [3, 4]: flat index 5 is [1, 1]
      await expect(saveCheckpoint(dir, c)).rejects.toThrow(/model tensor 'wte' holds NaN at \[1, 1\]; refusing to save non-finite weights/);
      const c2 = sampleCheckpoint(1);
      c2.optimizer!.v['lnf.w']!.data[2] = Infinity;
      await expect(saveCheckpoint(dir, c2)).rejects.toThrow(/optimizer\.v tensor 'lnf\.w' holds Infinity at \[2\]/);
      expect(existsSync(dir)).toBe(false);
    });

    it('load: a weights file with a NaN whose hashes were updated to match (written by another tool)', async () => {
      await saveCheckpoint(dir, sampleCheckpoint(2));
      const back = await loadCheckpoint(dir);
      const model = { ...back.model, 'h0.attn.qkv.w': f32Tensor([12, 4], back.model['h0.attn.qkv.w']!.data.slice() as Float32Array) };
      model['h0.attn.qkv.w']!.data[4 * 3 + 2] = -Infinity;
      const buf = writeSafetensors(model, { format: 'agentrl-checkpoint', kind: 'model' });
      writeFileSync(join(dir, 'model.safetensors'), buf);
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
      m.files['model.safetensors'].bytes = buf.length;
      m.files['model.safetensors'].sha256 = createHash('sha256').update(buf).digest('hex');
      delete m.checksum;
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
      await expect(loadCheckpoint(dir)).rejects.toThrow(/model\.safetensors: tensor 'h0\.attn\.qkv\.w' holds -Infinity at \[3, 2\]; refusing to load non-finite weights/);
    });
  });

  describe('manifest checksum: an edited manifest is refused, naming the field', () => {
    const edit = async (f: (m: any) => void) => {
      const d = freshDir();
      await saveCheckpoint(d, sampleCheckpoint(4));
      const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8'));
      f(m);
      writeFileSync(join(d, 'manifest.json'), JSON.stringify(m, null, 2));
      return loadCheckpoint(d);
    };

    it('the manifest records a checksum, and reformatting the JSON does not matter', async () => {
      await saveCheckpoint(dir, sampleCheckpoint(4));
      const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
      expect(m.checksum.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(Object.keys(m.checksum.fields)).toEqual(expect.arrayContaining(['step', 'rng', 'rng.sampler', 'config', 'config.nEmbd', 'files.model.safetensors']));
      // Key order and whitespace are not content.
      const reordered = Object.fromEntries(Object.entries(m).reverse());
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify(reordered, null, 4));
      expect((await loadCheckpoint(dir)).step).toBe(4);
    });

    it('edited step, RNG state, config or trainer state', async () => {
      await expect(edit((m) => { m.step = 5; })).rejects.toThrow(/manifest\.json does not match its checksum \(field 'step' changed after the checkpoint was written\); refusing to load it/);
      await expect(edit((m) => { m.rng.sampler[0] ^= 1; })).rejects.toThrow(/field 'rng\.sampler' changed/);
      await expect(edit((m) => { m.config.nEmbd = 8; })).rejects.toThrow(/field 'config\.nEmbd' changed/);
      await expect(edit((m) => { m.trainerState.lr = 1e-3; m.weightVersion = 0; })).rejects.toThrow(/fields 'weightVersion', 'trainerState\.lr' changed/);
    });

    it('added or removed fields, and an edited checksum', async () => {
      await expect(edit((m) => { m.config.extra = 1; })).rejects.toThrow(/field 'config\.extra' added/);
      await expect(edit((m) => { delete m.config.name; })).rejects.toThrow(/field 'config\.name' removed/);
      await expect(edit((m) => { m.checksum.sha256 = '0'.repeat(64); })).rejects.toThrow(/does not match its checksum \(the checksum itself was changed/);
      await expect(edit((m) => { m.checksum = 'x'; })).rejects.toThrow(/manifest\.json is invalid: checksum: Expected object/);
    });

    it('a manifest without a checksum (written before checksums existed) still loads', async () => {
      const back = await edit((m) => { delete m.checksum; m.step = 9; });
      expect(back.step).toBe(9);
    });
  });

  describe('a save that crashes between protocol steps leaves a loadable checkpoint (injected failures)', () => {
    const steps: SaveStep[] = ['written', 'old-moved-aside', 'new-renamed-in', 'done'];
    for (const at of steps) {
      it(`crash after '${at}'`, async () => {
        await saveCheckpoint(dir, markerCheckpoint(1, 64));
        await expect(saveCheckpoint(dir, markerCheckpoint(2, 64), { onStep: (s) => { if (s === at) throw new Error('crash'); } })).rejects.toThrow('crash');
        const back = await loadCheckpoint(dir);
        assertConsistent(back);
        const expected = at === 'written' || at === 'old-moved-aside' ? 1 : 2;
        expect(back.step).toBe(expected);
        expect(back.recovered).toBe(at === 'old-moved-aside');
        // The next save succeeds and removes the crashed save's leftovers.
        await saveCheckpoint(dir, markerCheckpoint(3, 64));
        expect((await loadCheckpoint(dir)).step).toBe(3);
        expect(readdirSync(dirname(dir)).filter((f) => f.startsWith(basename(dir)))).toEqual([basename(dir)]);
      });
    }
    it('a real failure while writing removes the temp directory and keeps the old checkpoint', async () => {
      await saveCheckpoint(dir, markerCheckpoint(1, 64));
      const bad = markerCheckpoint(2, 64);
      bad.model.a = { dtype: 'F32', shape: [40], data: new Float32Array(32) };
      await expect(saveCheckpoint(dir, { ...bad, optimizer: null })).rejects.toThrow(/saveCheckpoint .*: writeSafetensors: tensor 'a' has 32 elements but shape \[40\] needs 40/);
      expect((await loadCheckpoint(dir)).step).toBe(1);
      expect(readdirSync(dirname(dir)).filter((f) => f.startsWith(basename(dir)))).toEqual([basename(dir)]);
    });
  });

  describe('a writer killed with SIGKILL never leaves a corrupt mixture', () => {
    it.each([
      ['written', 1, false],
      ['old-moved-aside', 1, true],
      ['new-renamed-in', 2, false],
    ] as const)('killed after %s → loads step %i', async (hangAt, expectedStep, recovered) => {
      await saveCheckpoint(dir, markerCheckpoint(1, 2048));
      await runWriter(dir, 2, 2048, { hangAt });
      const back = await loadCheckpoint(dir);
      assertConsistent(back);
      expect(back.step).toBe(expectedStep);
      expect(back.recovered).toBe(recovered);
      // A later save (this process) cleans up what the dead writer left behind.
      await saveCheckpoint(dir, markerCheckpoint(3, 2048));
      assertConsistent(await loadCheckpoint(dir));
      expect(readdirSync(dirname(dir)).filter((f) => f.startsWith(basename(dir)))).toEqual([basename(dir)]);
    });

    it('killed at arbitrary moments while writing a large checkpoint', async () => {
      const FLOATS = 4_000_000; // 16 MB of weights, 32 MB of optimizer state
      const seen: string[] = [];
      for (const delayMs of [0, 5, 30]) {
        const d = freshDir();
        await saveCheckpoint(d, markerCheckpoint(1, 64));
        const progress = await runWriter(d, 2, FLOATS, { killWhenWriting: true, delayMs });
        const back = await loadCheckpoint(d);
        assertConsistent(back);
        expect([1, 2]).toContain(back.step);
        if (!progress.includes('step:written')) expect(back.step).toBe(1);
        seen.push(`${delayMs}ms → step ${back.step} (${progress.at(-1)})`);
      }
      // At least one kill must have landed before the new checkpoint was complete.
      expect(seen.some((s) => s.includes('step 1')), seen.join('; ')).toBe(true);
    });
  });

  it('finds the latest step checkpoint in a run directory and prunes old ones', async () => {
    const run = join(freshDir(), 'runs', 'demo', 'checkpoints');
    expect(await latestCheckpoint(run)).toBeNull();
    for (const s of [5, 120, 7]) await saveCheckpoint(checkpointPath(run, s), markerCheckpoint(s, 8));
    expect(checkpointPath(run, 120)).toBe(join(run, 'step-000000120'));
    mkdirSync(join(run, 'step-000000999.tmp-1-ab')); // an abandoned temp dir is not a checkpoint
    mkdirSync(join(run, 'unrelated'));
    expect((await listCheckpoints(run)).map((c) => c.step)).toEqual([5, 7, 120]);
    expect(await latestCheckpoint(run)).toBe(join(run, 'step-000000120'));
    expect(await pruneCheckpoints(run, 2)).toEqual([join(run, 'step-000000005')]);
    expect((await listCheckpoints(run)).map((c) => c.step)).toEqual([7, 120]);
    // A newer step that only survives as the aside copy of an interrupted save still counts.
    await expect(saveCheckpoint(checkpointPath(run, 130), markerCheckpoint(130, 8))).resolves.toBeUndefined();
    await expect(saveCheckpoint(checkpointPath(run, 130), markerCheckpoint(131, 8), { onStep: (s) => { if (s === 'old-moved-aside') throw new Error('crash'); } })).rejects.toThrow('crash');
    expect(await latestCheckpoint(run)).toBe(join(run, 'step-000000130'));
    expect((await loadCheckpoint(join(run, 'step-000000130'))).step).toBe(130);
  });
});

/**
 * Run test/fixtures/checkpoint-writer.ts to save `step` over `dir` and SIGKILL it: after it reports
 * `hangAt`, or (killWhenWriting) `delayMs` after its temp directory's weight file first appears.
 * Returns the progress lines it printed.
 */
function runWriter(dir: string, step: number, floats: number, o: { hangAt?: SaveStep; killWhenWriting?: boolean; delayMs?: number }): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(step), String(floats), o.hangAt ?? ''], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    let killed = false;
    const kill = () => { if (!killed) { killed = true; child.kill('SIGKILL'); } };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      lines.push(...chunk.split('\n').filter(Boolean));
      if (o.hangAt && lines.includes(`step:${o.hangAt}`)) kill();
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
    let poll: NodeJS.Timeout | undefined;
    if (o.killWhenWriting) {
      poll = setInterval(() => {
        const tmp = readdirSync(dirname(dir)).find((f) => f.startsWith(`${basename(dir)}.tmp-`));
        const weights = tmp && join(dirname(dir), tmp, 'model.safetensors');
        if (weights && existsSync(weights) && statSync(weights).size > 0) {
          clearInterval(poll);
          setTimeout(kill, o.delayMs ?? 0);
        }
      }, 1);
    }
    // 'close' (not 'exit'): every line the child wrote before dying has been read by then.
    child.on('close', (code, signal) => {
      clearInterval(poll);
      if (signal === 'SIGKILL' || code === 0) resolve(lines);
      else reject(new Error(`checkpoint writer exited with code ${code}: ${stderr}`));
    });
  });
}
