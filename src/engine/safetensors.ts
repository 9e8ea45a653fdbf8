/**
 * The safetensors file format, read and written by hand:
 *
 *   [8 bytes: N, u64 little-endian] [N bytes: JSON header] [data buffer]
 *
 * The header maps tensor names to `{ dtype, shape, data_offsets: [begin, end) }` (offsets relative
 * to the data buffer) plus an optional `"__metadata__"` of string → string. Tensors tile the data
 * buffer exactly (no gaps, no overlaps, nothing after the last one). We pad the header with spaces
 * so the data buffer starts 8-byte aligned, and lay tensors out widest dtype first so every tensor
 * is aligned to its element size.
 *
 * Reading validates everything and throws errors that name the file and the problem.
 *
 * Hugging Face checkpoints store weights as F32, F16 or BF16: `readSafetensorsAsF32` /
 * `readSafetensorsFileAsF32` decode those to F32 exactly (every F16 and BF16 value is an F32 value),
 * and `writeSafetensorsAs` / `writeSafetensorsFileAs` encode F32 weights as F32, BF16 or F16
 * (round to nearest, ties to even; NaN stays NaN). `readSafetensors` keeps to F32/I32/U8.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { HfDType, HfTensors } from './arch.ts';

export type Tensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'U8'; shape: number[]; data: Uint8Array };
export type DType = Tensor['dtype'];
export type TensorMap = Record<string, Tensor>;

export interface SafetensorsContents {
  tensors: TensorMap;
  metadata: Record<string, string>;
}

const DTYPE_BYTES: Record<DType, number> = { F32: 4, I32: 4, U8: 1 };
/** Headers larger than this are refused (the reference implementation's limit): protects against garbage lengths. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

if (endianness() !== 'LE') throw new Error('safetensors: this implementation needs a little-endian machine');

/** Number of elements of a shape ([] is a scalar: 1). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Flat row-major index → `[i, j, …]` for messages (`[flat]` for 0-d and 1-d shapes). */
export function formatIndex(flat: number, shape: readonly number[]): string {
  if (shape.length <= 1) return `[${flat}]`;
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(flat % shape[d]!);
    flat = Math.floor(flat / shape[d]!);
  }
  return `[${idx.join(', ')}]`;
}

/** The first NaN/±Infinity of a float tensor: 'holds NaN at [3, 1]', or null (other dtypes: null). */
export function nonFiniteAt(t: Tensor): string | null {
  if (t.dtype !== 'F32') return null;
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) return `holds ${v} at ${formatIndex(i, t.shape)}`; // NaN and ±Infinity
  }
  return null;
}

/** A float32 tensor; `data` defaults to zeros. */
export function f32Tensor(shape: number[], data?: Float32Array): Tensor {
  const n = numel(shape);
  const d = data ?? new Float32Array(n);
  if (d.length !== n) throw new Error(`f32Tensor: data has ${d.length} elements but shape [${shape.join(', ')}] needs ${n}`);
  return { dtype: 'F32', shape, data: d };
}

/** Serialise tensors (and string metadata) to one safetensors buffer. */
export function writeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors).sort((a, b) => {
    const wa = DTYPE_BYTES[tensors[a]!.dtype], wb = DTYPE_BYTES[tensors[b]!.dtype];
    return wb - wa || (a < b ? -1 : a > b ? 1 : 0);
  });
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`writeSafetensors: metadata value of '${k}' must be a string, got ${typeof v}`);
    }
    header[METADATA_KEY] = metadata;
  }
  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY || name.length === 0) throw new Error(`writeSafetensors: '${name}' cannot be a tensor name`);
    const t = tensors[name]!;
    if (!(t.dtype in DTYPE_BYTES)) throw new Error(`writeSafetensors: tensor '${name}' has unsupported dtype ${String(t.dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    checkShape(t.shape, () => `writeSafetensors: tensor '${name}'`);
    if (t.data.length !== numel(t.shape)) {
      throw new Error(`writeSafetensors: tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
    const bytes = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = Buffer.alloc(8 + headerLen + offset);
  out.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(out, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  const base = 8 + headerLen;
  for (const name of names) {
    const t = tensors[name]!;
    const begin = (header[name] as { data_offsets: number[] }).data_offsets[0]!;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), base + begin);
  }
  return out;
}

/**
 * Parse and validate a safetensors buffer. `source` names the file in error messages. Tensor data
 * is copied out, so the result does not keep `buf` alive.
 */
export function readSafetensors(buf: Uint8Array, source = 'safetensors buffer'): SafetensorsContents {
  const { specs, metadata, dataStart } = parseLayout(buf, buf.length, source, DTYPE_BYTES);
  const tensors: TensorMap = {};
  const base = buf.byteOffset + dataStart;
  for (const s of specs) {
    const bytes = buf.buffer.slice(base + s.begin, base + s.end) as ArrayBuffer;
    tensors[s.name] = s.dtype === 'F32' ? { dtype: 'F32', shape: s.shape, data: new Float32Array(bytes) }
      : s.dtype === 'I32' ? { dtype: 'I32', shape: s.shape, data: new Int32Array(bytes) }
      : { dtype: 'U8', shape: s.shape, data: new Uint8Array(bytes) };
  }
  return { tensors, metadata };
}

interface TensorSpec<D extends string> {
  name: string;
  dtype: D;
  shape: number[];
  /** Byte range in the data buffer. */
  begin: number;
  end: number;
}

/**
 * Validate the header and the layout of a safetensors file of `fileBytes` bytes whose first bytes
 * are `head` (at least the 8-byte length and the JSON header when the file has them). Only dtypes
 * in `dtypeBytes` are accepted. Returns the tensors sorted by offset and where the data buffer starts.
 */
function parseLayout<D extends string>(head: Uint8Array, fileBytes: number, source: string, dtypeBytes: Record<D, number>): { specs: TensorSpec<D>[]; metadata: Record<string, string>; dataStart: number } {
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (fileBytes < 8) fail(`is truncated (${fileBytes} bytes; a safetensors file starts with an 8-byte header length)`);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} is implausible (limit ${MAX_HEADER_BYTES}); this is not a safetensors file or its first bytes are corrupt`);
  const n = Number(n64);
  if (8 + n > fileBytes) fail(`is truncated (header says its JSON header is ${n} bytes, but only ${fileBytes - 8} bytes follow the length field)`);

  const headerText = Buffer.from(head.buffer, head.byteOffset + 8, n).toString('utf8');
  if (!headerText.startsWith('{')) fail(`header is not a JSON object (it starts with ${JSON.stringify(headerText.slice(0, 16))})`);
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');

  const entries = Object.entries(header as Record<string, unknown>);
  const metadata: Record<string, string> = {};
  const specs: TensorSpec<D>[] = [];
  for (const [name, raw] of entries) {
    if (name === METADATA_KEY) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`${METADATA_KEY} must be an object of strings`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`${METADATA_KEY}.${k} must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null) fail(`tensor '${name}': header entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (dtype === undefined) fail(`tensor '${name}' has no dtype`);
    if (typeof dtype !== 'string' || !Object.hasOwn(dtypeBytes, dtype)) {
      fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(dtypeBytes).join(', ')})`);
    }
    if (!Array.isArray(shape)) fail(`tensor '${name}': shape must be an array of non-negative integers`);
    checkShape(shape as number[], () => `${source}: tensor '${name}'`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor '${name}': data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`tensor '${name}': data_offsets [${begin}, ${end}] end before they begin`);
    const need = numel(shape as number[]) * dtypeBytes[dtype as D];
    if (end - begin !== need) {
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} shape [${(shape as number[]).join(', ')}] needs ${need}`);
    }
    specs.push({ name, dtype: dtype as D, shape: [...(shape as number[])], begin, end });
  }

  // The tensors must tile the data buffer exactly.
  const dataLen = fileBytes - 8 - n;
  specs.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const [i, s] of specs.entries()) {
    if (s.begin < cursor) fail(`tensors '${specs[i - 1]!.name}' and '${s.name}' overlap (byte ${s.begin} < ${cursor})`);
    if (s.begin > cursor) fail(`gap of ${s.begin - cursor} bytes before tensor '${s.name}' (data_offsets must tile the data buffer)`);
    cursor = s.end;
  }
  if (cursor > dataLen) fail(`is truncated (header says ${8 + n + cursor} bytes, file has ${fileBytes})`);
  if (cursor < dataLen) fail(`has ${dataLen - cursor} unexpected bytes after the last tensor (header says ${8 + n + cursor} bytes, file has ${fileBytes})`);
  return { specs, metadata, dataStart: 8 + n };
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  return readSafetensors(await readFile(path), path);
}

function checkShape(shape: readonly unknown[], where: () => string): void {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new Error(`${where()}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Number.isSafeInteger(numel(shape as number[]))) throw new Error(`${where()}: shape [${shape.join(', ')}] has too many elements`);
}

// ---------------------------------------------------------------------------------------------
// Float weights (Hugging Face checkpoints): F32, F16 and BF16, decoded to / encoded from F32.

/** Dtypes decoded to F32 by `readSafetensorsAsF32`. F64 is refused: the engine computes in F32 and no supported checkpoint ships F64. */
const FLOAT_DTYPE_BYTES: Record<HfDType, number> = { F32: 4, F16: 2, BF16: 2 };
/** Bytes per tensor read at a time when decoding from a file (bounds the scratch memory). */
const READ_CHUNK_BYTES = 1 << 26;

export interface FloatSafetensorsContents {
  tensors: HfTensors;
  metadata: Record<string, string>;
}

/** Name → dtype and shape of every tensor of a float safetensors file, from its header alone. */
export interface FloatSafetensorsHeader {
  tensors: Map<string, { dtype: HfDType; shape: number[] }>;
  metadata: Record<string, string>;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The F32 bit pattern of an F16 one (exact: F16 ⊂ F32, subnormals normalised, NaN payload kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // ±Infinity, NaN
  if (exp === 0) {
    if (mant === 0) return sign >>> 0; // ±0
    // Subnormal mant·2^-24: shift the leading 1 up to the implicit-bit position.
    let e = 113; // F32 biased exponent of 2^-14
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

let f16Table: Uint32Array | null = null;
/** F32 bit patterns of all 65,536 F16 values, built on first use. */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/** F32 → BF16 bits, rounding to nearest with ties to even (overflow gives ±Infinity); NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return bf16FromF32Bits(scratchU32[0]!);
}

function bf16FromF32Bits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40; // NaN: truncating could leave an Infinity
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** F32 → F16 bits, rounding to nearest with ties to even (subnormals included; overflow gives ±Infinity); NaN stays a (quiet) NaN. */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f16FromF32Bits(scratchU32[0]!);
}

function f16FromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return mant !== 0 ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  const e = exp - 112; // F16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // F16 subnormal (or zero): value / 2^-24, rounded. F32 subnormals (exp 0) are far below 2^-25: zero.
    if (exp === 0 || e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h; // h may round up to 0x400, the smallest normal: still the right encoding
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent is correct, up to Infinity
  return h;
}

/** Decode `count` elements of `dtype` from `bytes` (2- or 4-byte aligned) into `out` at `at`. */
function decodeInto(dtype: HfDType, bytes: Uint8Array, out: Float32Array, at: number): void {
  if (dtype === 'F32') {
    new Uint8Array(out.buffer, out.byteOffset + 4 * at, bytes.byteLength).set(bytes);
    return;
  }
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const dst = new Uint32Array(out.buffer, out.byteOffset + 4 * at, src.length);
  if (dtype === 'BF16') {
    for (let i = 0; i < src.length; i++) dst[i] = src[i]! << 16;
  } else {
    const table = f16ToF32Table();
    for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!;
  }
}

/** F32 weights encoded as `dtype` (little-endian bytes; F32 is a view of `data`, not a copy). */
export function encodeF32As(data: Float32Array, dtype: HfDType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const src = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const dst = new Uint16Array(data.length);
  const enc = dtype === 'BF16' ? bf16FromF32Bits : f16FromF32Bits;
  for (let i = 0; i < src.length; i++) dst[i] = enc(src[i]!);
  return new Uint8Array(dst.buffer);
}

/** Parse and validate a safetensors buffer of F32/F16/BF16 tensors, decoding them all to F32 (`dtype` says what was stored). */
export function readSafetensorsAsF32(buf: Uint8Array, source = 'safetensors buffer'): FloatSafetensorsContents {
  const { specs, metadata, dataStart } = parseLayout(buf, buf.length, source, FLOAT_DTYPE_BYTES);
  const tensors: HfTensors = new Map();
  for (const s of specs) {
    const data = new Float32Array(numel(s.shape));
    let bytes = buf.subarray(dataStart + s.begin, dataStart + s.end);
    if (bytes.byteOffset % 4 !== 0) bytes = bytes.slice(); // typed-array views need aligned offsets
    decodeInto(s.dtype, bytes, data, 0);
    tensors.set(s.name, { shape: s.shape, data, dtype: s.dtype });
  }
  return { tensors, metadata };
}

/** Open a float safetensors file and validate its header and layout against its size. */
async function openFloatFile(path: string) {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const first = new Uint8Array(Math.min(8, size));
    await readFully(fh, first, 0);
    let headLen = first.length;
    if (size >= 8) {
      // parseLayout reports an implausible or too long header; read no more than it will look at.
      const n64 = new DataView(first.buffer).getBigUint64(0, true);
      headLen = n64 > BigInt(MAX_HEADER_BYTES) ? 8 : Math.min(size, 8 + Number(n64));
    }
    const head = new Uint8Array(headLen);
    await readFully(fh, head, 0);
    return { fh, size, layout: parseLayout(head, size, path, FLOAT_DTYPE_BYTES) };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Names, dtypes and shapes of the tensors of a float safetensors file, validating its header and layout without reading the data. */
export async function readSafetensorsFileHeader(path: string): Promise<FloatSafetensorsHeader> {
  const { fh, layout } = await openFloatFile(path);
  await fh.close();
  return { tensors: new Map(layout.specs.map((s) => [s.name, { dtype: s.dtype, shape: s.shape }])), metadata: layout.metadata };
}

/**
 * `readSafetensorsAsF32` for a file, reading it tensor by tensor in chunks of `chunkBytes` (64 MiB):
 * files larger than one Node buffer can hold are fine, and scratch memory stays bounded.
 */
export async function readSafetensorsFileAsF32(path: string, opts: { chunkBytes?: number } = {}): Promise<FloatSafetensorsContents> {
  const chunkBytes = opts.chunkBytes ?? READ_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % 4 !== 0) throw new Error(`readSafetensorsFileAsF32: chunkBytes must be a positive multiple of 4, got ${chunkBytes}`);
  const { fh, layout } = await openFloatFile(path);
  try {
    const tensors: HfTensors = new Map();
    let scratch: Uint8Array | null = null;
    for (const s of layout.specs) {
      const data = new Float32Array(numel(s.shape));
      const width = FLOAT_DTYPE_BYTES[s.dtype];
      for (let off = 0; off < s.end - s.begin; off += chunkBytes) {
        const len = Math.min(chunkBytes, s.end - s.begin - off);
        if (s.dtype === 'F32') {
          await readFully(fh, new Uint8Array(data.buffer, off, len), layout.dataStart + s.begin + off);
        } else {
          scratch ??= new Uint8Array(chunkBytes);
          const chunk = scratch.subarray(0, len);
          await readFully(fh, chunk, layout.dataStart + s.begin + off);
          decodeInto(s.dtype, chunk, data, off / width);
        }
      }
      tensors.set(s.name, { shape: s.shape, data, dtype: s.dtype });
    }
    return { tensors, metadata: layout.metadata };
  } finally {
    await fh.close();
  }
}

async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < into.length;) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Write all of `bytes` at `position` (one write call moves at most ~2 GB); returns the position after them. */
async function writeFully(fh: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  for (let done = 0; done < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.length - done, 1 << 30), position + done);
    done += bytesWritten;
  }
  return position + bytes.length;
}

type FloatTensors = Iterable<[string, { shape: number[]; data: Float32Array }]>;

/** Header (with its 8-byte length, space-padded to 8-byte alignment) for `tensors` stored as `dtype`, in the given order. */
function floatHeader(tensors: FloatTensors, dtype: HfDType, metadata: Record<string, string> | undefined, who: string): { head: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`${who}: metadata value of '${k}' must be a string, got ${typeof v}`);
    }
    header[METADATA_KEY] = metadata;
  }
  if (!Object.hasOwn(FLOAT_DTYPE_BYTES, dtype)) throw new Error(`${who}: unsupported dtype ${String(dtype)} (supported: ${Object.keys(FLOAT_DTYPE_BYTES).join(', ')})`);
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === METADATA_KEY || name.length === 0) throw new Error(`${who}: '${name}' cannot be a tensor name`);
    if (Object.hasOwn(header, name)) throw new Error(`${who}: tensor '${name}' appears twice`);
    checkShape(t.shape, () => `${who}: tensor '${name}'`);
    if (t.data.length !== numel(t.shape)) {
      throw new Error(`${who}: tensor '${name}' has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
    const bytes = t.data.length * FLOAT_DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerLen = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const head = Buffer.alloc(8 + headerLen, 0x20);
  head.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(head, 8);
  return { head, dataBytes: offset };
}

/** Serialise F32 tensors stored as `dtype` (F32, BF16 or F16; rounding to nearest even) to one safetensors buffer. */
export function writeSafetensorsAs(tensors: FloatTensors, dtype: HfDType, metadata?: Record<string, string>): Buffer {
  const list = [...tensors];
  const { head, dataBytes } = floatHeader(list, dtype, metadata, 'writeSafetensorsAs');
  const out = Buffer.alloc(head.length + dataBytes);
  head.copy(out, 0);
  let at = head.length;
  for (const [, t] of list) {
    const bytes = encodeF32As(t.data, dtype);
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

/**
 * `writeSafetensorsAs` straight to a new file (refuses to replace one), tensor by tensor, then
 * fsync: no whole-file buffer. Returns the file's size.
 */
export async function writeSafetensorsFileAs(path: string, tensors: FloatTensors, dtype: HfDType, metadata?: Record<string, string>): Promise<number> {
  const list = [...tensors];
  const { head, dataBytes } = floatHeader(list, dtype, metadata, `writeSafetensorsFileAs ${path}`);
  const fh = await open(path, 'wx');
  try {
    let at = await writeFully(fh, head, 0);
    for (const [, t] of list) at = await writeFully(fh, encodeF32As(t.data, dtype), at);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return head.length + dataBytes;
}
