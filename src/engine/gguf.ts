/**
 * The GGUF file format (llama.cpp / ggml), read and written by hand:
 *
 *   "GGUF" u32 version  u64 tensor_count  u64 kv_count        (v1 used u32 counts; not supported)
 *   kv_count × { string key, u32 value_type, value }
 *   tensor_count × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (default 32), then the tensor data; each tensor's `offset` is
 *   relative to the start of the data and a multiple of the alignment.
 *
 * Strings are u64 length + UTF-8 bytes; arrays are u32 item type + u64 count + items (arrays of
 * arrays allowed); everything is little-endian. `ne` lists dimensions fastest-varying first
 * (ne[0] is the row length), the reverse of a row-major shape: a Hugging Face `[out, in]` weight
 * has ne = [in, out]. This module exposes both (`dims` = ne, `shape` = row-major).
 *
 * Tensor data types decoded to F32: F32, F16, BF16 and Q8_0 (blocks of 32: an f16 scale d and 32
 * int8 q, x = d·q). Any other ggml type is parsed (its byte size is known) but decoding it is an
 * error naming the tensor and the type. Writing encodes F32 data to any of the four, quantising
 * Q8_0 exactly as ggml's quantize_row_q8_0_ref does (d = amax/127, q = round(x/d), half away from
 * zero, all in float32) and rounding F16/BF16 to nearest even.
 *
 * Reading validates everything (magic, version, truncation, counts, types, shapes, offsets,
 * alignment, overlaps) and throws errors naming the file; it never allocates more than the file
 * could describe, so a corrupt length cannot exhaust memory.
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';

if (endianness() !== 'LE') throw new Error('gguf: this implementation needs a little-endian machine');

export const GGUF_MAGIC = 'GGUF';
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Most dimensions a ggml tensor has. */
export const GGML_MAX_DIMS = 4;

// ---------------------------------------------------------------------------------------------
// Metadata values

/** GGUF metadata value types, by their on-disk id. */
export const GGUF_VALUE_TYPES = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'bool', 'string', 'array', 'uint64', 'int64', 'float64'] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];
export type GgufNumberType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';
export type GgufBigIntType = 'uint64' | 'int64';

/** One item of an array (arrays of arrays hold `GgufArray`s). */
export type GgufArrayItem = number | bigint | boolean | string | GgufArray;
export interface GgufArray {
  type: 'array';
  itemType: GgufValueType;
  value: GgufArrayItem[];
}
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufArray;

/** Metadata in file order. */
export type GgufMetadata = Map<string, GgufValue>;

const NUMBER_BYTES: Record<GgufNumberType | GgufBigIntType | 'bool', number> = {
  uint8: 1, int8: 1, uint16: 2, int16: 2, uint32: 4, int32: 4, float32: 4, float64: 8, uint64: 8, int64: 8, bool: 1,
};

// Convenience constructors, so writers read like the metadata they produce.
export const gguf = {
  u8: (value: number): GgufValue => ({ type: 'uint8', value }),
  i8: (value: number): GgufValue => ({ type: 'int8', value }),
  u16: (value: number): GgufValue => ({ type: 'uint16', value }),
  i16: (value: number): GgufValue => ({ type: 'int16', value }),
  u32: (value: number): GgufValue => ({ type: 'uint32', value }),
  i32: (value: number): GgufValue => ({ type: 'int32', value }),
  f32: (value: number): GgufValue => ({ type: 'float32', value }),
  f64: (value: number): GgufValue => ({ type: 'float64', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'uint64', value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: 'int64', value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  arr: (itemType: GgufValueType, value: GgufArrayItem[]): GgufArray => ({ type: 'array', itemType, value }),
};

// ---------------------------------------------------------------------------------------------
// Tensor types

export interface GgmlTypeInfo {
  id: number;
  name: string;
  /** Elements per block (1 for plain types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

/** ggml tensor types with their block geometry (ggml.c type_traits / gguf-py GGML_QUANT_SIZES). */
const GGML_TYPE_LIST: GgmlTypeInfo[] = [
  { id: 0, name: 'F32', blockSize: 1, typeSize: 4 },
  { id: 1, name: 'F16', blockSize: 1, typeSize: 2 },
  { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18 },
  { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20 },
  { id: 6, name: 'Q5_0', blockSize: 32, typeSize: 22 },
  { id: 7, name: 'Q5_1', blockSize: 32, typeSize: 24 },
  { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34 },
  { id: 9, name: 'Q8_1', blockSize: 32, typeSize: 36 },
  { id: 10, name: 'Q2_K', blockSize: 256, typeSize: 84 },
  { id: 11, name: 'Q3_K', blockSize: 256, typeSize: 110 },
  { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144 },
  { id: 13, name: 'Q5_K', blockSize: 256, typeSize: 176 },
  { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210 },
  { id: 15, name: 'Q8_K', blockSize: 256, typeSize: 292 },
  { id: 16, name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  { id: 17, name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  { id: 18, name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  { id: 19, name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  { id: 20, name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  { id: 21, name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  { id: 22, name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  { id: 23, name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  { id: 24, name: 'I8', blockSize: 1, typeSize: 1 },
  { id: 25, name: 'I16', blockSize: 1, typeSize: 2 },
  { id: 26, name: 'I32', blockSize: 1, typeSize: 4 },
  { id: 27, name: 'I64', blockSize: 1, typeSize: 8 },
  { id: 28, name: 'F64', blockSize: 1, typeSize: 8 },
  { id: 29, name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  { id: 30, name: 'BF16', blockSize: 1, typeSize: 2 },
  { id: 34, name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  { id: 35, name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  { id: 39, name: 'MXFP4', blockSize: 32, typeSize: 17 },
  { id: 40, name: 'NVFP4', blockSize: 64, typeSize: 36 },
  { id: 41, name: 'Q1_0', blockSize: 128, typeSize: 18 },
];
const GGML_TYPES_BY_ID = new Map(GGML_TYPE_LIST.map((t) => [t.id, t]));
const GGML_TYPES_BY_NAME = new Map(GGML_TYPE_LIST.map((t) => [t.name, t]));

/** Tensor types this module decodes to and encodes from F32. */
export type GgufTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0';
export const GGUF_SUPPORTED_TYPES: readonly GgufTensorType[] = ['F32', 'F16', 'BF16', 'Q8_0'];
const QK8_0 = 32;

export function ggmlTypeByName(name: string): GgmlTypeInfo {
  const t = GGML_TYPES_BY_NAME.get(name);
  if (!t) throw new Error(`gguf: unknown ggml tensor type '${name}' (known: ${GGML_TYPE_LIST.map((x) => x.name).join(', ')})`);
  return t;
}

/** Bytes of `nElements` elements of a ggml type (nElements must fill whole rows of blocks). */
function byteSizeOf(t: GgmlTypeInfo, nElements: number): number {
  return (nElements / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------------------------------------
// Float conversions (round to nearest even, as numpy / F16C / ggml do)

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // Inf / NaN (kept quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → ±Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    // Subnormal half: shift the full mantissa (with its implicit 1) and round to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1) === 1)) r++; // may carry into the exponent: still correct
  return sign | r;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** ggml_compute_fp32_to_bf16: NaN stays a (quiet) NaN, everything else rounds to nearest even. */
export function f32ToBf16Bits(x: number): number {
  f32buf[0] = x;
  const u = u32buf[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32buf[0] = (h << 16) >>> 0;
  return f32buf[0]!;
}

/** C's roundf: half away from zero. */
function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Encode F32 data (row length `rowLength`) to a ggml tensor type. */
export function encodeTensorData(data: Float32Array, type: GgufTensorType, rowLength: number, what = 'tensor'): Uint8Array {
  const n = data.length;
  switch (type) {
    case 'F32':
      return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(data[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'BF16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = f32ToBf16Bits(data[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'Q8_0': {
      if (rowLength % QK8_0 !== 0) throw new Error(`gguf: cannot quantise ${what} to Q8_0: its row length ${rowLength} is not a multiple of ${QK8_0}`);
      const nb = n / QK8_0;
      const out = new Uint8Array(nb * 34);
      const view = new DataView(out.buffer);
      for (let b = 0; b < nb; b++) {
        let amax = 0;
        for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(data[b * QK8_0 + j]!));
        const d = Math.fround(amax / 127);
        const id = d !== 0 ? Math.fround(1 / d) : 0;
        view.setUint16(b * 34, f32ToF16Bits(d), true);
        for (let j = 0; j < QK8_0; j++) view.setInt8(b * 34 + 2 + j, roundHalfAway(Math.fround(data[b * QK8_0 + j]! * id)));
      }
      return out;
    }
  }
}

/** Decode `nElements` elements of a supported ggml type from `bytes` to F32. */
function decodeTensorData(bytes: Uint8Array, type: GgufTensorType, nElements: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(nElements);
  switch (type) {
    case 'F32':
      for (let i = 0; i < nElements; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < nElements; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return out;
    case 'BF16':
      for (let i = 0; i < nElements; i++) out[i] = bf16BitsToF32(view.getUint16(2 * i, true));
      return out;
    case 'Q8_0':
      for (let b = 0; b < nElements / QK8_0; b++) {
        const d = f16BitsToF32(view.getUint16(b * 34, true));
        for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = d * view.getInt8(b * 34 + 2 + j);
      }
      return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] (row length) first. */
  dims: number[];
  /** Row-major shape (dims reversed). */
  shape: number[];
  type: string;
  typeId: number;
  /** Byte offset relative to the start of the tensor data. */
  offset: number;
  byteSize: number;
}

export interface GgufFile {
  source: string;
  version: number;
  alignment: number;
  metadata: GgufMetadata;
  tensorInfos: GgufTensorInfo[];
  /** Absolute byte offset of the tensor data in `bytes`. */
  dataOffset: number;
  bytes: Uint8Array;
}

export interface GgufDecodedTensor {
  shape: number[];
  data: Float32Array;
  /** The type the tensor was stored in. */
  type: GgufTensorType;
}

/** Refuse strings longer than this (no GGUF key, name or token is remotely this long). */
const MAX_STRING_BYTES = 1 << 30;

class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  constructor(readonly bytes: Uint8Array, private readonly fail: (msg: string) => never) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.bytes.length - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.remaining) this.fail(`is truncated: ${what} needs ${n} bytes at offset ${this.pos}, but the file has ${this.bytes.length} bytes`);
  }
  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  i8(what: string): number { this.need(1, what); return this.view.getInt8(this.pos++); }
  u16(what: string): number { this.need(2, what); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(what: string): number { this.need(2, what); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(what: string): number { this.need(4, what); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(what: string): number { this.need(4, what); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(what: string): number { this.need(8, what); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(what: string): bigint { this.need(8, what); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }
  /** A u64 that must fit a safe integer and not exceed `max`. */
  count(what: string, max: number): number {
    const v = this.u64(what);
    if (v > BigInt(max)) this.fail(`${what} is ${v}, but the ${Math.max(0, this.remaining)} bytes that follow could hold at most ${Math.max(0, max)} (truncated or corrupt file)`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.count(`length of ${what}`, Math.min(this.remaining - 8, MAX_STRING_BYTES));
    this.need(n, what);
    const s = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return this.decoder.decode(s);
    } catch {
      return this.fail(`${what} at offset ${this.pos - n} is not valid UTF-8`);
    }
  }
}

function valueTypeName(id: number, where: string, fail: (msg: string) => never): GgufValueType {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) fail(`${where} has unknown GGUF value type ${id} (known: 0..${GGUF_VALUE_TYPES.length - 1})`);
  return t!;
}

/** Smallest number of bytes one value of a type occupies (to bound array counts). */
function minValueBytes(t: GgufValueType): number {
  if (t === 'string') return 8;
  if (t === 'array') return 12;
  return NUMBER_BYTES[t];
}

function readScalar(c: Cursor, t: Exclude<GgufValueType, 'array'>, what: string, fail: (msg: string) => never): number | bigint | boolean | string {
  switch (t) {
    case 'uint8': return c.u8(what);
    case 'int8': return c.i8(what);
    case 'uint16': return c.u16(what);
    case 'int16': return c.i16(what);
    case 'uint32': return c.u32(what);
    case 'int32': return c.i32(what);
    case 'float32': return c.f32(what);
    case 'float64': return c.f64(what);
    case 'uint64': return c.u64(what);
    case 'int64': return c.i64(what);
    case 'bool': {
      const b = c.u8(what);
      if (b > 1) fail(`${what} is a bool with byte value ${b} (must be 0 or 1)`);
      return b === 1;
    }
    case 'string': return c.string(what);
  }
}

function readArray(c: Cursor, what: string, fail: (msg: string) => never, depth: number): GgufArray {
  if (depth > 8) fail(`${what} nests arrays more than 8 deep`);
  const itemType = valueTypeName(c.u32(`item type of ${what}`), what, fail);
  const n = c.count(`item count of ${what}`, Math.floor((c.remaining - 8) / minValueBytes(itemType)));
  const value: GgufArrayItem[] = new Array(n);
  for (let i = 0; i < n; i++) {
    value[i] = itemType === 'array' ? readArray(c, `${what}[${i}]`, fail, depth + 1) : readScalar(c, itemType, `${what}[${i}]`, fail);
  }
  return { type: 'array', itemType, value };
}

function readValue(c: Cursor, t: GgufValueType, what: string, fail: (msg: string) => never): GgufValue {
  if (t === 'array') return readArray(c, what, fail, 0);
  return { type: t, value: readScalar(c, t, what, fail) } as GgufValue;
}

/**
 * Parse a GGUF file's header (metadata and tensor infos) and validate its tensor layout; tensor
 * data stays in `bytes` until decoded with `decodeGgufTensor`. `source` names the file in errors.
 */
export function parseGguf(bytes: Uint8Array, source = 'GGUF buffer'): GgufFile {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  const c = new Cursor(bytes, fail);
  if (bytes.length < 4) fail(`is truncated (${bytes.length} bytes); a GGUF file starts with the 4 bytes "GGUF"`);
  const magic = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  if (magic !== GGUF_MAGIC) fail(`is not a GGUF file (bad magic ${JSON.stringify(magic)}; expected "GGUF")`);
  c.pos = 4;
  const version = c.u32('version');
  if (version === 1) fail('is GGUF version 1, which is not supported (convert it with a current llama.cpp)');
  if (version !== 2 && version !== 3) fail(`has unsupported GGUF version ${version} (supported: 2, 3)`);
  // Each tensor info takes at least 8 + 4 + 4 + 8 bytes, each key/value at least 8 + 4 + 1.
  const tensorCount = c.count('tensor count', Math.floor(c.remaining / 24));
  const kvCount = c.count('metadata key/value count', Math.floor(c.remaining / 13));

  const metadata: GgufMetadata = new Map();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key #${i}`);
    const t = valueTypeName(c.u32(`value type of '${key}'`), `metadata '${key}'`, fail);
    if (metadata.has(key)) fail(`metadata key '${key}' appears twice`);
    metadata.set(key, readValue(c, t, `metadata '${key}'`, fail));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (al.type !== 'uint32') fail(`general.alignment must be a uint32, got ${al.type}`);
    const a = al.value as number;
    if (a === 0 || (a & (a - 1)) !== 0) fail(`general.alignment must be a power of two, got ${a}`);
    alignment = a;
  }

  const tensorInfos: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`name of tensor #${i}`);
    if (names.has(name)) fail(`tensor '${name}' appears twice`);
    names.add(name);
    const nDims = c.u32(`dimension count of tensor '${name}'`);
    if (nDims > GGML_MAX_DIMS) fail(`tensor '${name}' has ${nDims} dimensions (ggml allows at most ${GGML_MAX_DIMS})`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const ne = c.u64(`dimension ${d} of tensor '${name}'`);
      if (ne > BigInt(Number.MAX_SAFE_INTEGER)) fail(`tensor '${name}' dimension ${d} is ${ne}, which is not a plausible size`);
      dims.push(Number(ne));
    }
    const typeId = c.u32(`type of tensor '${name}'`);
    const info = GGML_TYPES_BY_ID.get(typeId);
    if (!info) fail(`tensor '${name}' has unknown ggml type id ${typeId}`);
    const offset = c.u64(`offset of tensor '${name}'`);
    const nElements = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(nElements)) fail(`tensor '${name}' has too many elements (dims [${dims.join(', ')}])`);
    if ((dims[0] ?? 1) % info!.blockSize !== 0) {
      fail(`tensor '${name}' of type ${info!.name} has row length ${dims[0] ?? 1}, not a multiple of its block size ${info!.blockSize}`);
    }
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) fail(`tensor '${name}' offset ${offset} is out of range`);
    tensorInfos.push({
      name, dims, shape: [...dims].reverse(), type: info!.name, typeId, offset: Number(offset), byteSize: byteSizeOf(info!, nElements),
    });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataLength = bytes.length - dataOffset;
  // Offsets must be aligned, in range, and tensors must not overlap (llama.cpp requires the same).
  const sorted = [...tensorInfos].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const t of sorted) {
    if (t.offset % alignment !== 0) fail(`tensor '${t.name}' offset ${t.offset} is not a multiple of the alignment ${alignment}`);
    if (t.offset < end) fail(`tensor '${t.name}' (offset ${t.offset}) overlaps the tensor before it, which ends at ${end}`);
    if (t.offset + t.byteSize > dataLength) {
      fail(`tensor '${t.name}' data [${t.offset}, ${t.offset + t.byteSize}) is out of range: the file has ${Math.max(0, dataLength)} bytes of tensor data (truncated file?)`);
    }
    end = t.offset + t.byteSize;
  }
  return { source, version, alignment, metadata, tensorInfos, dataOffset, bytes };
}

/** Decode one tensor to F32 (F32, F16, BF16 and Q8_0; other types are an error). */
export function decodeGgufTensor(file: GgufFile, info: GgufTensorInfo): GgufDecodedTensor {
  if (!(GGUF_SUPPORTED_TYPES as readonly string[]).includes(info.type)) {
    throw new Error(`${file.source}: tensor '${info.name}' has type ${info.type}, which agentrl cannot decode (supported: ${GGUF_SUPPORTED_TYPES.join(', ')}); re-export the model as F32, F16, BF16 or Q8_0`);
  }
  const start = file.dataOffset + info.offset;
  const nElements = info.dims.reduce((a, b) => a * b, 1);
  const data = decodeTensorData(file.bytes.subarray(start, start + info.byteSize), info.type as GgufTensorType, nElements);
  return { shape: [...info.shape], data, type: info.type as GgufTensorType };
}

/** Parse a GGUF buffer and decode every tensor. */
export function readGguf(bytes: Uint8Array, source = 'GGUF buffer'): { file: GgufFile; tensors: Map<string, GgufDecodedTensor> } {
  const file = parseGguf(bytes, source);
  const tensors = new Map<string, GgufDecodedTensor>();
  for (const info of file.tensorInfos) tensors.set(info.name, decodeGgufTensor(file, info));
  return { file, tensors };
}

export async function readGgufFile(path: string): Promise<{ file: GgufFile; tensors: Map<string, GgufDecodedTensor> }> {
  return readGguf(await readFile(path), path);
}

// ---------------------------------------------------------------------------------------------
// Typed metadata access (errors name the file and key)

export function metaValue(file: Pick<GgufFile, 'source' | 'metadata'>, key: string): GgufValue | undefined {
  return file.metadata.get(key);
}

/** A numeric metadata value (any integer or float type; 64-bit integers must be safe integers). */
export function metaNumber(file: Pick<GgufFile, 'source' | 'metadata'>, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type === 'uint64' || v.type === 'int64') {
    if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${file.source}: metadata '${key}' = ${v.value} is out of range`);
    return Number(v.value);
  }
  if (typeof v.value !== 'number') throw new Error(`${file.source}: metadata '${key}' must be a number, got ${v.type}`);
  return v.value;
}

export function requireNumber(file: Pick<GgufFile, 'source' | 'metadata'>, key: string): number {
  const v = metaNumber(file, key);
  if (v === undefined) throw new Error(`${file.source}: metadata '${key}' is missing`);
  return v;
}

export function metaString(file: Pick<GgufFile, 'source' | 'metadata'>, key: string): string | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'string') throw new Error(`${file.source}: metadata '${key}' must be a string, got ${v.type}`);
  return v.value;
}

export function metaBool(file: Pick<GgufFile, 'source' | 'metadata'>, key: string): boolean | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'bool') throw new Error(`${file.source}: metadata '${key}' must be a bool, got ${v.type}`);
  return v.value;
}

export function metaArray(file: Pick<GgufFile, 'source' | 'metadata'>, key: string, itemTypes: readonly GgufValueType[]): GgufArrayItem[] | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'array' || !itemTypes.includes(v.itemType)) {
    throw new Error(`${file.source}: metadata '${key}' must be an array of ${itemTypes.join(' or ')}, got ${v.type === 'array' ? `an array of ${v.itemType}` : v.type}`);
  }
  return v.value;
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface GgufTensorToWrite {
  name: string;
  /** Row-major shape (written to the file reversed, as ggml's ne). */
  shape: number[];
  data: Float32Array;
  type: GgufTensorType;
}

export interface GgufToWrite {
  metadata: GgufMetadata | [string, GgufValue][];
  tensors: GgufTensorToWrite[];
  /** Data alignment; written as `general.alignment` when it differs from 32. */
  alignment?: number;
}

class Writer {
  private chunks: Uint8Array[] = [];
  length = 0;
  private readonly encoder = new TextEncoder();
  push(b: Uint8Array): void { this.chunks.push(b); this.length += b.length; }
  private scratch(n: number, fill: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    fill(new DataView(b.buffer));
    this.push(b);
  }
  u8(v: number): void { this.scratch(1, (d) => d.setUint8(0, v)); }
  i8(v: number): void { this.scratch(1, (d) => d.setInt8(0, v)); }
  u16(v: number): void { this.scratch(2, (d) => d.setUint16(0, v, true)); }
  i16(v: number): void { this.scratch(2, (d) => d.setInt16(0, v, true)); }
  u32(v: number): void { this.scratch(4, (d) => d.setUint32(0, v, true)); }
  i32(v: number): void { this.scratch(4, (d) => d.setInt32(0, v, true)); }
  f32(v: number): void { this.scratch(4, (d) => d.setFloat32(0, v, true)); }
  f64(v: number): void { this.scratch(8, (d) => d.setFloat64(0, v, true)); }
  u64(v: bigint): void { this.scratch(8, (d) => d.setBigUint64(0, v, true)); }
  i64(v: bigint): void { this.scratch(8, (d) => d.setBigInt64(0, v, true)); }
  string(s: string): void {
    const b = this.encoder.encode(s);
    this.u64(BigInt(b.length));
    this.push(b);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    if (n > 0) this.push(new Uint8Array(n));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) { out.set(c, o); o += c.length; }
    return out;
  }
}

function checkInt(v: number, lo: number, hi: number, what: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`writeGguf: ${what} must be an integer in [${lo}, ${hi}], got ${v}`);
}

function writeScalar(w: Writer, t: GgufValueType, v: GgufArrayItem, what: string): void {
  const bad = (): never => { throw new Error(`writeGguf: ${what} must be a ${t}, got ${typeof v === 'bigint' ? `${v}n` : JSON.stringify(v)}`); };
  switch (t) {
    case 'uint8': if (typeof v !== 'number') bad(); checkInt(v as number, 0, 0xff, what); return w.u8(v as number);
    case 'int8': if (typeof v !== 'number') bad(); checkInt(v as number, -0x80, 0x7f, what); return w.i8(v as number);
    case 'uint16': if (typeof v !== 'number') bad(); checkInt(v as number, 0, 0xffff, what); return w.u16(v as number);
    case 'int16': if (typeof v !== 'number') bad(); checkInt(v as number, -0x8000, 0x7fff, what); return w.i16(v as number);
    case 'uint32': if (typeof v !== 'number') bad(); checkInt(v as number, 0, 0xffffffff, what); return w.u32(v as number);
    case 'int32': if (typeof v !== 'number') bad(); checkInt(v as number, -0x80000000, 0x7fffffff, what); return w.i32(v as number);
    case 'float32': if (typeof v !== 'number') bad(); return w.f32(v as number);
    case 'float64': if (typeof v !== 'number') bad(); return w.f64(v as number);
    case 'uint64':
      if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) bad();
      return w.u64(v as bigint);
    case 'int64':
      if (typeof v !== 'bigint' || v < -0x8000000000000000n || v > 0x7fffffffffffffffn) bad();
      return w.i64(v as bigint);
    case 'bool': if (typeof v !== 'boolean') bad(); return w.u8(v ? 1 : 0);
    case 'string': if (typeof v !== 'string') bad(); return w.string(v as string);
    case 'array': {
      if (typeof v !== 'object' || v === null || (v as GgufArray).type !== 'array') bad();
      const a = v as GgufArray;
      w.u32(GGUF_VALUE_TYPES.indexOf(a.itemType));
      w.u64(BigInt(a.value.length));
      for (let i = 0; i < a.value.length; i++) writeScalar(w, a.itemType, a.value[i]!, `${what}[${i}]`);
      return;
    }
  }
}

/** Serialise metadata and tensors to a GGUF v3 buffer. */
export function writeGguf(spec: GgufToWrite): Uint8Array {
  const alignment = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) throw new Error(`writeGguf: alignment must be a power of two, got ${alignment}`);
  const entries = [...(spec.metadata instanceof Map ? spec.metadata.entries() : spec.metadata)];
  const keys = new Set<string>();
  for (const [k, v] of entries) {
    if (keys.has(k)) throw new Error(`writeGguf: metadata key '${k}' given twice`);
    keys.add(k);
    if (k === 'general.alignment' && (v.type !== 'uint32' || v.value !== alignment)) {
      throw new Error(`writeGguf: metadata general.alignment must be the uint32 ${alignment} (pass { alignment } instead)`);
    }
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !keys.has('general.alignment')) entries.push(['general.alignment', gguf.u32(alignment)]);

  const encoded: { t: GgufTensorToWrite; bytes: Uint8Array; offset: number }[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of spec.tensors) {
    if (names.has(t.name)) throw new Error(`writeGguf: tensor '${t.name}' given twice`);
    names.add(t.name);
    if (t.shape.length === 0 || t.shape.length > GGML_MAX_DIMS || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`writeGguf: tensor '${t.name}' shape [${t.shape.join(', ')}] must have 1..${GGML_MAX_DIMS} non-negative integer dimensions`);
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new Error(`writeGguf: tensor '${t.name}' has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${n}`);
    if (!(GGUF_SUPPORTED_TYPES as readonly string[]).includes(t.type)) throw new Error(`writeGguf: tensor '${t.name}' type ${String(t.type)} is not one of ${GGUF_SUPPORTED_TYPES.join(', ')}`);
    const bytes = encodeTensorData(t.data, t.type, t.shape[t.shape.length - 1]!, `tensor '${t.name}'`);
    encoded.push({ t, bytes, offset });
    offset += Math.ceil(bytes.length / alignment) * alignment;
  }

  const w = new Writer();
  w.push(new TextEncoder().encode(GGUF_MAGIC));
  w.u32(3);
  w.u64(BigInt(encoded.length));
  w.u64(BigInt(entries.length));
  for (const [k, v] of entries) {
    w.string(k);
    w.u32(GGUF_VALUE_TYPES.indexOf(v.type));
    writeScalar(w, v.type, v.type === 'array' ? v : v.value, `metadata '${k}'`);
  }
  for (const { t, offset: o } of encoded) {
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(BigInt(t.shape[d]!));
    w.u32(ggmlTypeByName(t.type).id);
    w.u64(BigInt(o));
  }
  w.pad(alignment);
  for (const { bytes } of encoded) {
    w.push(bytes);
    w.pad(alignment);
  }
  return w.concat();
}
