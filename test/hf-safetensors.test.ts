import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import './helpers/fast-check-seed.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeF32As, f16BitsToF32Bits, f32ToBf16Bits, f32ToF16Bits, readSafetensors, readSafetensorsAsF32, readSafetensorsFileAsF32, readSafetensorsFileHeader,
  writeSafetensors, writeSafetensorsAs, writeSafetensorsFileAs,
} from '../src/engine/safetensors.ts';

const scratch = mkdtempSync(join(tmpdir(), 'agentrl-hf-st-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const fromBits = (bits: number) => { u32[0] = bits >>> 0; return f32[0]!; };
const bitsOf = (x: number) => { f32[0] = x; return u32[0]!; };

/** Independent decoders: the IEEE formulas in float64 arithmetic. */
function f16Formula(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
function bf16Formula(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 7) & 0xff, mant = h & 0x7f;
  if (exp === 0) return sign * mant * 2 ** -133;
  if (exp === 255) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 128) * 2 ** (exp - 127);
}

/**
 * Reference round-to-nearest-even of x to a binary format with `p` significand bits, smallest normal
 * exponent `emin` and largest finite value `max`, by the nearest-representable search in float64:
 * the two neighbours lo ≤ |x| < hi one ulp apart, the nearer wins, a tie goes to the even multiple
 * of the ulp; a result above `max` overflows to Infinity (IEEE: round as if the exponent were unbounded).
 */
function refRound(x: number, p: number, emin: number, max: number): number {
  if (Number.isNaN(x) || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = emin; // subnormals share the smallest normal's ulp
  if (a >= 2 ** emin) {
    e = Math.floor(Math.log2(a));
    while (2 ** e > a) e--;
    while (2 ** (e + 1) <= a) e++;
  }
  const ulp = 2 ** (e - p + 1);
  const k = Math.floor(a / ulp);
  const lo = k * ulp, hi = (k + 1) * ulp;
  let r = a - lo < hi - a ? lo : a - lo > hi - a ? hi : k % 2 === 0 ? lo : hi;
  if (r > max) r = Infinity;
  return x < 0 || Object.is(x, -0) ? -r : r;
}
const BF16_MAX = (2 - 2 ** -7) * 2 ** 127, F16_MAX = 65504;
const refBf16 = (x: number) => refRound(x, 8, -126, BF16_MAX);
const refF16 = (x: number) => refRound(x, 11, -14, F16_MAX);

const same = (a: number, b: number) => (Number.isNaN(a) ? Number.isNaN(b) : Object.is(a, b));

/** A safetensors buffer holding raw 16-bit patterns under `dtype`. */
function raw16(dtype: 'F16' | 'BF16', bits: Uint16Array, name = 'x'): Buffer {
  const json = Buffer.from(JSON.stringify({ [name]: { dtype, shape: [bits.length], data_offsets: [0, bits.byteLength] } }));
  const pad = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const head = Buffer.alloc(8 + pad, 0x20);
  head.writeBigUInt64LE(BigInt(pad), 0);
  json.copy(head, 8);
  return Buffer.concat([head, Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength)]);
}

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
/**
 * F32 values at and around the rounding boundaries of a 16-bit format (random ones almost never
 * hit a tie): a representable value (from its 16-bit pattern) plus a fraction of its ulp — exactly
 * half (a tie), just above or below half, a quarter, three quarters.
 */
function nearTies(decode: (h: number) => number, ulpOf: (h: number) => number, tiny: number) {
  return fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0.5, 0.5 + tiny, 0.5 - tiny, 0.25, 0.75, 0))
    .filter(([h]) => Number.isFinite(decode(h)))
    .map(([h, frac]) => { const v = decode(h); return Math.fround(v + Math.sign(1 / v) * frac * ulpOf(h)); });
}
const bf16Ulp = (h: number) => { const exp = (h >> 7) & 0xff; return 2 ** ((exp === 0 ? 1 : exp) - 134); };
const f16Ulp = (h: number) => { const exp = (h >> 10) & 0x1f; return 2 ** ((exp === 0 ? 1 : exp) - 25); };
/** Every float32 (uniform over bit patterns, which covers subnormals, ±0, ±Infinity and NaNs) and fast-check's float generator. */
const anyF32 = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }).map(fromBits), fc.float());

describe('F16 and BF16 decoding is exact', () => {
  it('all 65,536 F16 bit patterns match the IEEE formula (subnormals, ±0, ±Infinity, NaN)', async () => {
    const buf = raw16('F16', ALL16);
    const { tensors } = readSafetensorsAsF32(buf, 'all.safetensors');
    const t = tensors.get('x')!;
    expect(t.dtype).toBe('F16');
    expect(t.shape).toEqual([65536]);
    for (let h = 0; h < 65536; h++) if (!same(t.data[h]!, f16Formula(h))) expect.fail(`F16 0x${h.toString(16)}: ${t.data[h]} vs ${f16Formula(h)}`);
    // The file reader, in small chunks, decodes the same.
    const p = join(scratch, 'all-f16.safetensors');
    writeFileSync(p, buf);
    const fromFile = (await readSafetensorsFileAsF32(p, { chunkBytes: 1000 })).tensors.get('x')!;
    expect(Buffer.from(fromFile.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
    // NaN payloads and signs survive (the F32 pattern is the F16 one widened).
    expect(f16BitsToF32Bits(0x7e01)).toBe(0x7fc02000);
    expect(f16BitsToF32Bits(0xfc01)).toBe(0xff802000);
    expect(f16BitsToF32Bits(0x0001)).toBe(bitsOf(2 ** -24));
    expect(f16BitsToF32Bits(0x8000)).toBe(0x80000000);
  });

  it('all 65,536 BF16 bit patterns match the IEEE formula', () => {
    const t = readSafetensorsAsF32(raw16('BF16', ALL16)).tensors.get('x')!;
    expect(t.dtype).toBe('BF16');
    for (let h = 0; h < 65536; h++) if (!same(t.data[h]!, bf16Formula(h))) expect.fail(`BF16 0x${h.toString(16)}: ${t.data[h]} vs ${bf16Formula(h)}`);
  });
});

describe('F32 → BF16 / F16 rounds to nearest, ties to even', () => {
  it('hand-picked cases', () => {
    const bf = (x: number) => bf16Formula(f32ToBf16Bits(x));
    expect(bf(1 + 2 ** -8)).toBe(1); // tie between 1 and 1 + 2^-7: even (1) wins
    expect(bf(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6); // tie between 1 + 2^-7 (odd) and 1 + 2^-6 (even)
    expect(bf(1 + 2 ** -8 + 2 ** -20)).toBe(1 + 2 ** -7); // just above the tie
    expect(bf(fromBits(0x7f7fffff))).toBe(Infinity); // F32 max rounds past BF16 max
    expect(bf(-fromBits(0x7f7f7fff))).toBe(-BF16_MAX); // just below the overflow tie
    expect(Number.isNaN(bf(NaN))).toBe(true);
    // A NaN whose payload lies in the dropped bits stays NaN (set through the bits: a JS number would quiet it).
    const nan = new Float32Array(new Uint32Array([0x7f800001, 0xff800001]).buffer);
    expect([...new Uint16Array(encodeF32As(nan, 'BF16').slice().buffer)]).toEqual([0x7fc0, 0xffc0]);
    expect([...new Uint16Array(encodeF32As(nan, 'F16').slice().buffer)]).toEqual([0x7e00, 0xfe00]);
    expect(Object.is(bf(-0), -0)).toBe(true);
    expect(bf(2 ** -149)).toBe(0); // smallest F32 subnormal: below half a BF16 subnormal ulp
    const h = (x: number) => f16Formula(f32ToF16Bits(x));
    expect(h(65519)).toBe(65504);
    expect(h(65520)).toBe(Infinity); // the overflow tie goes to the even side, Infinity
    expect(h(2 ** -25)).toBe(0); // tie between 0 (even) and the smallest subnormal
    expect(h(3 * 2 ** -26)).toBe(2 ** -24);
    expect(h(3 * 2 ** -25)).toBe(2 ** -23); // tie between 1 and 2 ulps: even (2)
    expect(h(2 ** -14 - 2 ** -26)).toBe(2 ** -14); // the largest subnormal rounds up into the normals
    expect(h(1 + 2 ** -11)).toBe(1);
    expect(h(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(Number.isNaN(h(NaN))).toBe(true);
  });

  it('BF16: equals the reference nearest-representable search for any F32', () => {
    const ties = nearTies(bf16Formula, bf16Ulp, 2 ** -15);
    fc.assert(fc.property(fc.oneof(anyF32, ties), (x) => same(bf16Formula(f32ToBf16Bits(x)), refBf16(x))), { numRuns: 20000 });
  });

  it('F16: equals the reference nearest-representable search for any F32', () => {
    // Values near F16's range are where subnormals, overflow and ties happen.
    const nearRange = fc.double({ min: -70000, max: 70000, noNaN: true }).map(Math.fround);
    const ties = nearTies(f16Formula, f16Ulp, 2 ** -12);
    fc.assert(fc.property(fc.oneof(anyF32, nearRange, ties), (x) => same(f16Formula(f32ToF16Bits(x)), refF16(x))), { numRuns: 20000 });
  });

  it('writeSafetensorsAs + readSafetensorsAsF32 round-trip: F32 exactly, BF16/F16 as rounded', () => {
    const data = Float32Array.from({ length: 5000 }, (_, i) => fromBits(Math.imul(i + 1, 0x9e3779b1) >>> 0));
    data[1] = -0; data[2] = Infinity;
    // Signalling NaNs whose payload sits in the low bits only (a JS number cannot carry them: set the bits).
    const bits = new Uint32Array(data.buffer);
    bits[0] = 0x7f800001; bits[3] = 0xff800010; bits[4] = 0x7fc00000;
    const shape = [50, 100];
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const buf = writeSafetensorsAs([['w', { shape, data }], ['b', { shape: [3], data: Float32Array.from([1, 2, 3]) }]], dtype, { format: 'pt' });
      const back = readSafetensorsAsF32(buf, dtype);
      expect(back.metadata).toEqual({ format: 'pt' });
      const w = back.tensors.get('w')!;
      expect(w.dtype).toBe(dtype);
      expect(w.shape).toEqual(shape);
      const ref = dtype === 'F32' ? (x: number) => x : dtype === 'BF16' ? refBf16 : refF16;
      for (let i = 0; i < data.length; i++) if (!same(w.data[i]!, ref(data[i]!))) expect.fail(`${dtype} element ${i}: ${w.data[i]} vs ${ref(data[i]!)}`);
      expect([...back.tensors.get('b')!.data]).toEqual([1, 2, 3]);
      // The header is 8-byte aligned and the data tiles the buffer (validated by the reader above).
      expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    }
  });
});

describe('float safetensors files', () => {
  it('the file reader and writer agree with the buffer versions; the header reader reads no data', async () => {
    const tensors: [string, { shape: number[]; data: Float32Array }][] = [
      ['a', { shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 1e-3, 65504, -7]) }],
      ['scalar', { shape: [], data: Float32Array.from([0.1]) }],
      ['empty', { shape: [0, 4], data: new Float32Array(0) }],
    ];
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const p = join(scratch, `rt-${dtype}.safetensors`);
      const size = await writeSafetensorsFileAs(p, tensors, dtype, { format: 'pt' });
      const mem = writeSafetensorsAs(tensors, dtype, { format: 'pt' });
      expect(size).toBe(mem.length);
      const fromFile = await readSafetensorsFileAsF32(p, { chunkBytes: 4 });
      const fromMem = readSafetensorsAsF32(mem);
      expect([...fromFile.tensors.keys()]).toEqual(['a', 'scalar', 'empty']);
      for (const [name, t] of fromMem.tensors) {
        expect(fromFile.tensors.get(name)).toEqual(t);
      }
      const header = await readSafetensorsFileHeader(p);
      expect([...header.tensors]).toEqual([['a', { dtype, shape: [2, 3] }], ['scalar', { dtype, shape: [] }], ['empty', { dtype, shape: [0, 4] }]]);
      await expect(writeSafetensorsFileAs(p, tensors, dtype)).rejects.toThrow(/EEXIST/);
    }
  });

  it('unsupported dtypes and damaged files are refused, naming the file and tensor', async () => {
    const good = writeSafetensorsAs([['w', { shape: [2], data: Float32Array.from([1, 2]) }]], 'F32');
    const retype = (dtype: string, bytes: number) => {
      const json = Buffer.from(JSON.stringify({ w: { dtype, shape: [2], data_offsets: [0, 2 * bytes] } }));
      const pad = Math.ceil((8 + json.length) / 8) * 8 - 8;
      const head = Buffer.alloc(8 + pad, 0x20);
      head.writeBigUInt64LE(BigInt(pad), 0);
      json.copy(head, 8);
      return Buffer.concat([head, Buffer.alloc(2 * bytes)]);
    };
    expect(() => readSafetensorsAsF32(retype('I8', 1), 'q.safetensors')).toThrow('q.safetensors: tensor \'w\' has unsupported dtype "I8" (supported: F32, F16, BF16)');
    expect(() => readSafetensorsAsF32(retype('F64', 8), 'q.safetensors')).toThrow('q.safetensors: tensor \'w\' has unsupported dtype "F64" (supported: F32, F16, BF16)');
    const p = join(scratch, 'i8.safetensors');
    writeFileSync(p, retype('I8', 1));
    await expect(readSafetensorsFileAsF32(p)).rejects.toThrow(`${p}: tensor 'w' has unsupported dtype "I8"`);
    await expect(readSafetensorsFileHeader(p)).rejects.toThrow(`${p}: tensor 'w' has unsupported dtype "I8"`);
    // The F32/I32/U8 reader keeps refusing half-precision tensors.
    expect(() => readSafetensors(retype('BF16', 2), 'h.safetensors')).toThrow('h.safetensors: tensor \'w\' has unsupported dtype "BF16" (supported: F32, I32, U8)');
    // Truncation anywhere is reported by both readers, with the path.
    const cut = join(scratch, 'cut.safetensors');
    for (const len of [0, 5, 12, good.length - 1]) {
      writeFileSync(cut, good.subarray(0, len));
      await expect(readSafetensorsFileAsF32(cut)).rejects.toThrow(`${cut}: is truncated`);
      await expect(readSafetensorsFileHeader(cut)).rejects.toThrow(`${cut}: is truncated`);
      expect(() => readSafetensorsAsF32(good.subarray(0, len), 'cut')).toThrow(/^cut: is truncated/);
    }
    const huge = Buffer.from(good); huge.writeBigUInt64LE(0xffffffffffffn, 0);
    writeFileSync(cut, huge);
    await expect(readSafetensorsFileHeader(cut)).rejects.toThrow(/header length \d+ is implausible/);
    // The same file through both writers: a tensor's F32 data is written as-is (bit-exact, not re-encoded).
    expect(writeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } }).subarray(-8)).toEqual(good.subarray(-8));
  });

  it('refuses to write inconsistent tensors', () => {
    expect(() => writeSafetensorsAs([['x', { shape: [3], data: new Float32Array(2) }]], 'BF16')).toThrow("writeSafetensorsAs: tensor 'x' has 2 elements but shape [3] needs 3");
    expect(() => writeSafetensorsAs([['x', { shape: [1], data: new Float32Array(1) }], ['x', { shape: [1], data: new Float32Array(1) }]], 'F32')).toThrow("tensor 'x' appears twice");
    expect(() => writeSafetensorsAs([['x', { shape: [1], data: new Float32Array(1) }]], 'F64' as 'F32')).toThrow('writeSafetensorsAs: unsupported dtype F64 (supported: F32, F16, BF16)');
  });
});
