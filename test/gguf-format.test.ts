import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  bf16BitsToF32, decodeGgufTensor, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, gguf, parseGguf, readGguf, writeGguf,
  type GgufMetadata, type GgufTensorToWrite,
} from '../src/engine/gguf.ts';
import { Rng } from '../src/core/rng.ts';

/** A GGUF assembled byte by byte, independently of writeGguf: 1 key/value, 1 F32 tensor of shape [1, 2]. */
function handMadeGguf(version = 3): Uint8Array {
  const parts: number[] = [];
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(...b); };
  const u64 = (v: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(...b); };
  const str = (s: string) => { u64(Buffer.byteLength(s)); parts.push(...Buffer.from(s)); };
  parts.push(...Buffer.from('GGUF'));
  u32(version); u64(1); u64(1);
  str('general.architecture'); u32(8); str('llama');
  str('t'); u32(2); u64(2); u64(1); u32(0); u64(0); // ne = [2, 1]: one row of two
  while (parts.length % 32 !== 0) parts.push(0);
  const f = Buffer.alloc(8); f.writeFloatLE(1.5, 0); f.writeFloatLE(-2, 4); parts.push(...f);
  return Uint8Array.from(parts);
}

function everyTypeMetadata(): GgufMetadata {
  return new Map([
    ['u8', gguf.u8(255)], ['i8', gguf.i8(-128)], ['u16', gguf.u16(65535)], ['i16', gguf.i16(-32768)],
    ['u32', gguf.u32(4294967295)], ['i32', gguf.i32(-2147483648)], ['f32', gguf.f32(0.5)], ['f64', gguf.f64(Math.PI)],
    ['u64', gguf.u64(18446744073709551615n)], ['i64', gguf.i64(-9223372036854775808n)],
    ['bool.t', gguf.bool(true)], ['bool.f', gguf.bool(false)], ['s', gguf.str('héllo ✓ 🦙')], ['empty', gguf.str('')],
    ['a.str', gguf.arr('string', ['a', '', 'Ġt', '<|im_end|>'])],
    ['a.i32', gguf.arr('int32', [1, -2, 3])], ['a.f32', gguf.arr('float32', [0.25, -1])], ['a.f64', gguf.arr('float64', [1e-300])],
    ['a.u8', gguf.arr('uint8', [0, 255])], ['a.i64', gguf.arr('int64', [-1n, 5n])], ['a.bool', gguf.arr('bool', [true, false])],
    ['a.empty', gguf.arr('uint32', [])],
    ['a.nested', gguf.arr('array', [gguf.arr('string', ['x']), gguf.arr('int16', [-7, 7])])],
  ]);
}

describe('GGUF reader', () => {
  it('reads a hand-assembled v3 file, and the same file as v2 (dims are listed fastest-varying first)', () => {
    for (const v of [3, 2]) {
      const { file, tensors } = readGguf(handMadeGguf(v), 'hand.gguf');
      expect(file.version).toBe(v);
      expect(file.metadata.get('general.architecture')).toEqual({ type: 'string', value: 'llama' });
      expect(file.tensorInfos[0]).toMatchObject({ name: 't', dims: [2, 1], shape: [1, 2], type: 'F32', offset: 0, byteSize: 8 });
      expect(file.dataOffset).toBe(128); // 24 header + 45 key/value + 41 tensor info = 110 → aligned to 32
      expect(Array.from(tensors.get('t')!.data)).toEqual([1.5, -2]);
    }
  });

  it('rejects GGUF v1 and unknown versions with the file name', () => {
    const b = handMadeGguf();
    b[4] = 1;
    expect(() => parseGguf(b, 'old.gguf')).toThrow(/^old\.gguf: is GGUF version 1/);
    b[4] = 9;
    expect(() => parseGguf(b, 'x.gguf')).toThrow(/^x\.gguf: has unsupported GGUF version 9/);
  });
});

describe('GGUF writer ⇄ reader round trips', () => {
  it('keeps metadata of every GGUF type, incl. 64-bit integers, arrays of strings and nested arrays', () => {
    const md = everyTypeMetadata();
    const { file } = readGguf(writeGguf({ metadata: md, tensors: [] }), 'md.gguf');
    expect(file.metadata).toEqual(md);
    expect([...file.metadata.keys()]).toEqual([...md.keys()]);
  });

  it('writes row-major shapes as reversed ggml dims and every tensor aligned', () => {
    const t = (name: string, shape: number[], type: GgufTensorToWrite['type']): GgufTensorToWrite => ({
      name, shape, type, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 7) - 3),
    });
    for (const alignment of [32, 64]) {
      const bytes = writeGguf({ metadata: [], tensors: [t('a', [3], 'F32'), t('b', [2, 64], 'Q8_0'), t('c', [5, 3], 'F16'), t('d', [2, 3, 4], 'BF16')], alignment });
      const file = parseGguf(bytes, 'al.gguf');
      expect(file.alignment).toBe(alignment);
      expect(file.metadata.has('general.alignment')).toBe(alignment !== 32);
      expect(file.tensorInfos.map((x) => x.dims)).toEqual([[3], [64, 2], [3, 5], [4, 3, 2]]);
      for (const info of file.tensorInfos) expect(info.offset % alignment).toBe(0);
      expect(file.dataOffset % alignment).toBe(0);
      // Small integers are exact in F32/F16/BF16; Q8_0 is within d/2 + 127·|d − f16(d)| (d = 3/127).
      for (const info of file.tensorInfos) {
        const back = decodeGgufTensor(file, info);
        const want = Float32Array.from({ length: back.data.length }, (_, i) => (i % 7) - 3);
        if (info.type === 'Q8_0') for (let i = 0; i < want.length; i++) expect(Math.abs(back.data[i]! - want[i]!)).toBeLessThanOrEqual((3 / 127) * (0.5 + 127 * 2 ** -11));
        else expect(back.data).toEqual(want);
      }
    }
  });

  it('F32 is bit-exact, including -0, subnormals, ±Inf and NaN', () => {
    const data = Float32Array.from([0, -0, 1e-45, -3.4028234663852886e38, Infinity, -Infinity, NaN, 1 / 3]);
    const { tensors } = readGguf(writeGguf({ metadata: [], tensors: [{ name: 'x', shape: [8], data, type: 'F32' }] }));
    expect(new Uint32Array(tensors.get('x')!.data.buffer)).toEqual(new Uint32Array(data.buffer));
  });

  it('F16 rounds to nearest even (hand-computed bit patterns) and decodes exactly', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00], [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], [2 ** -25 * 1.5, 0x0001], [2 ** -14, 0x0400], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
      [1 + 2 ** -10, 0x3c01], [-0, 0x8000], [0.1, 0x2e66], [65519, 0x7bff],
    ];
    for (const [x, bits] of cases) expect([x, f32ToF16Bits(x)]).toEqual([x, bits]);
    expect(f16BitsToF32(f32ToF16Bits(NaN))).toBeNaN();
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaNs
      expect(f32ToF16Bits(f16BitsToF32(h))).toBe(h);
    }
  });

  it('BF16 rounds to nearest even like ggml, keeping NaN a NaN', () => {
    const cases: [number, number][] = [[1, 0x3f80], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [-2, 0xc000], [3.4028234663852886e38, 0x7f80], [0, 0]];
    for (const [x, bits] of cases) expect([x, f32ToBf16Bits(x)]).toEqual([x, bits]);
    expect(bf16BitsToF32(f32ToBf16Bits(NaN))).toBeNaN();
    expect(bf16BitsToF32(0x3f82)).toBe(1 + 2 ** -6);
  });

  it('Q8_0 quantises a hand-computed block exactly as ggml (d = amax/127 as f16, q = round(x/d))', () => {
    const x = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 16); // amax = 1 (x[0] = -1)
    const bytes = writeGguf({ metadata: [], tensors: [{ name: 'q', shape: [32], data: x, type: 'Q8_0' }] });
    const file = parseGguf(bytes);
    const raw = bytes.subarray(file.dataOffset, file.dataOffset + 34);
    const dBits = raw[0]! | (raw[1]! << 8);
    expect(dBits).toBe(f32ToF16Bits(1 / 127)); // 0x2008
    const q = Array.from(new Int8Array(raw.buffer, raw.byteOffset + 2, 32));
    expect(q.slice(0, 4)).toEqual([-127, -119, -111, -103]); // round(-127), round(-119.0625), round(-111.125), round(-103.1875)
    expect(q[16]).toBe(0);
    expect(q[24]).toBe(64); // 0.5·127 = 63.5 rounds away from zero
    const back = decodeGgufTensor(file, file.tensorInfos[0]!).data;
    expect(back[24]).toBe(64 * f16BitsToF32(dBits));
  });

  it('Q8_0 error stays within d/2 plus the f16 rounding of d, per block; zero blocks stay zero', () => {
    const rng = new Rng(3);
    const n = 32 * 64;
    const x = Float32Array.from({ length: n }, (_, i) => (i < 32 ? 0 : rng.normal() * (1 + (i >> 5))));
    const { tensors } = readGguf(writeGguf({ metadata: [], tensors: [{ name: 'w', shape: [64, 32], data: x, type: 'Q8_0' }] }));
    const y = tensors.get('w')!.data;
    let worst = 0;
    for (let b = 0; b < 64; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      const d = amax / 127;
      // |x − q·d16| ≤ d/2 + 127·|d − d16| ≤ d·(1/2 + 127·2⁻¹¹)
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(x[b * 32 + j]! - y[b * 32 + j]!);
        if (b === 0) expect(err).toBe(0);
        else worst = Math.max(worst, err / d);
      }
    }
    expect(worst).toBeLessThanOrEqual(0.5 + 127 * 2 ** -11);
    expect(worst).toBeGreaterThan(0.3); // the bound is not vacuous
  });

  it('refuses Q8_0 rows that are not a multiple of 32 and tensors whose data does not fit the shape', () => {
    expect(() => writeGguf({ metadata: [], tensors: [{ name: 'w', shape: [2, 48], data: new Float32Array(96), type: 'Q8_0' }] })).toThrow(/tensor 'w'.*row length 48/);
    expect(() => writeGguf({ metadata: [], tensors: [{ name: 'w', shape: [2, 3], data: new Float32Array(5), type: 'F32' }] })).toThrow(/'w' has 5 elements/);
    expect(() => writeGguf({ metadata: [['x', gguf.u8(256)]], tensors: [] })).toThrow(/metadata 'x' must be an integer in \[0, 255\]/);
  });
});

describe('GGUF validation errors name the file and the problem', () => {
  const good = () => writeGguf({ metadata: [['general.architecture', gguf.str('llama')]], tensors: [{ name: 'w', shape: [2, 32], data: new Float32Array(64).fill(1), type: 'F32' }] });
  /** Absolute position of the tensor info fields of the only tensor 'w' (after its name). */
  const tensorInfoAt = (b: Uint8Array) => {
    const i = Buffer.from(b).indexOf('w', 24 + 8 + 'general.architecture'.length + 4 + 8 + 5);
    return { nDims: i + 1, type: i + 1 + 4 + 16, offset: i + 1 + 4 + 16 + 4 };
  };

  it('bad magic', () => {
    const b = good(); b[0] = 0x47 + 1;
    expect(() => parseGguf(b, 'm.gguf')).toThrow(/^m\.gguf: is not a GGUF file \(bad magic "HGUF"/);
  });
  it('truncated header and truncated data', () => {
    const b = good();
    expect(() => parseGguf(b.subarray(0, 12), 't.gguf')).toThrow(/^t\.gguf: is truncated: tensor count needs 8 bytes at offset 8, but the file has 12 bytes/);
    expect(() => parseGguf(b.subarray(0, 30), 't.gguf')).toThrow(/^t\.gguf: tensor count is 1, but the 14 bytes that follow could hold at most 0 \(truncated or corrupt file\)/);
    expect(() => parseGguf(b.subarray(0, 60), 't.gguf')).toThrow(/^t\.gguf: is truncated: /);
    expect(() => parseGguf(b.subarray(0, b.length - 1), 't.gguf')).toThrow(/^t\.gguf: tensor 'w' data \[0, 256\) is out of range/);
  });
  it('unknown tensor type, unsupported tensor type, unknown value type', () => {
    const b = good();
    const at = tensorInfoAt(b);
    new DataView(b.buffer).setUint32(at.type, 77, true);
    expect(() => parseGguf(b, 'u.gguf')).toThrow(/^u\.gguf: tensor 'w' has unknown ggml type id 77/);
    new DataView(b.buffer).setUint32(at.type, 2, true); // Q4_0: 2 rows × 32 → 2 blocks of 18 bytes
    const file = parseGguf(b, 'q.gguf');
    expect(() => decodeGgufTensor(file, file.tensorInfos[0]!)).toThrow(/^q\.gguf: tensor 'w' has type Q4_0, which agentrl cannot decode/);
    const c = good();
    new DataView(c.buffer).setUint32(24 + 8 + 'general.architecture'.length, 13, true);
    expect(() => parseGguf(c, 'v.gguf')).toThrow(/^v\.gguf: metadata 'general\.architecture' has unknown GGUF value type 13/);
  });
  it('misaligned, out-of-range and overlapping offsets', () => {
    const b = good();
    const at = tensorInfoAt(b);
    new DataView(b.buffer).setBigUint64(at.offset, 4n, true);
    expect(() => parseGguf(b, 'o.gguf')).toThrow(/offset 4 is not a multiple of the alignment 32/);
    new DataView(b.buffer).setBigUint64(at.offset, 1n << 40n, true);
    expect(() => parseGguf(b, 'o.gguf')).toThrow(/^o\.gguf: tensor 'w' data \[1099511627776, .*out of range/);
    const two = writeGguf({ metadata: [], tensors: [
      { name: 'a', shape: [64], data: new Float32Array(64), type: 'F32' }, { name: 'b', shape: [64], data: new Float32Array(64), type: 'F32' }] });
    const i = Buffer.from(two).lastIndexOf('b');
    new DataView(two.buffer).setBigUint64(i + 1 + 4 + 8 + 4, 128n, true); // b now starts inside a
    expect(() => parseGguf(two, 'ov.gguf')).toThrow(/^ov\.gguf: tensor 'b' \(offset 128\) overlaps/);
  });
  it('an absurd count or string length is refused before anything is allocated', () => {
    const b = good();
    new DataView(b.buffer).setBigUint64(16, 1n << 62n, true); // kv count
    expect(() => parseGguf(b, 'c.gguf')).toThrow(/^c\.gguf: metadata key\/value count is 4611686018427387904, but/);
    const s = good();
    new DataView(s.buffer).setBigUint64(24, 1n << 50n, true); // length of the first key
    expect(() => parseGguf(s, 's.gguf')).toThrow(/^s\.gguf: length of metadata key #0 is 1125899906842624/);
  });

  it('fuzz: truncated and corrupted files only ever throw validation errors naming the file', () => {
    const base = writeGguf({
      metadata: [...everyTypeMetadata(), ['general.alignment', gguf.u32(64)]],
      tensors: [
        { name: 'a', shape: [2, 32], data: Float32Array.from({ length: 64 }, (_, i) => i / 7), type: 'Q8_0' },
        { name: 'b', shape: [3, 5], data: new Float32Array(15).fill(0.5), type: 'F16' },
        { name: 'c', shape: [4], data: new Float32Array(4).fill(-1), type: 'BF16' },
      ],
      alignment: 64,
    });
    expect(readGguf(base, 'base').tensors.size).toBe(3);
    const check = (bytes: Uint8Array) => {
      try {
        readGguf(bytes, 'fuzz.gguf');
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message.startsWith('fuzz.gguf: ')).toBe(true);
      }
    };
    fc.assert(fc.property(fc.nat({ max: base.length }), (n) => check(base.slice(0, n))), { numRuns: 400 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: base.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const b = base.slice();
        for (const [at, v] of edits) b[at] = v;
        check(b);
      }),
      { numRuns: 1500 },
    );
    // Corrupt the high bytes of every u64 in the header region specifically (counts, lengths, dims, offsets).
    fc.assert(fc.property(fc.nat({ max: 1200 }), fc.integer({ min: 1, max: 255 }), (at, v) => {
      const b = base.slice();
      b[Math.min(at, b.length - 1)] = v;
      b[Math.min(at + 7, b.length - 1)] = v;
      check(b);
    }), { numRuns: 1500 });
  });
});
