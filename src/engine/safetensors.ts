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
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';

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
  const fail = (msg: string): never => {
    throw new Error(`${source}: ${msg}`);
  };
  if (buf.length < 8) fail(`is truncated (${buf.length} bytes; a safetensors file starts with an 8-byte header length)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} is implausible (limit ${MAX_HEADER_BYTES}); this is not a safetensors file or its first bytes are corrupt`);
  const n = Number(n64);
  if (8 + n > buf.length) fail(`is truncated (header says its JSON header is ${n} bytes, but only ${buf.length - 8} bytes follow the length field)`);

  const headerText = Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8');
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
  const specs: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
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
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape)) fail(`tensor '${name}': shape must be an array of non-negative integers`);
    checkShape(shape as number[], () => `${source}: tensor '${name}'`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor '${name}': data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`tensor '${name}': data_offsets [${begin}, ${end}] end before they begin`);
    const need = numel(shape as number[]) * DTYPE_BYTES[dtype as DType];
    if (end - begin !== need) {
      fail(`tensor '${name}': data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} shape [${(shape as number[]).join(', ')}] needs ${need}`);
    }
    specs.push({ name, dtype: dtype as DType, shape: [...(shape as number[])], begin, end });
  }

  // The tensors must tile the data buffer exactly.
  const dataLen = buf.length - 8 - n;
  specs.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const [i, s] of specs.entries()) {
    if (s.begin < cursor) fail(`tensors '${specs[i - 1]!.name}' and '${s.name}' overlap (byte ${s.begin} < ${cursor})`);
    if (s.begin > cursor) fail(`gap of ${s.begin - cursor} bytes before tensor '${s.name}' (data_offsets must tile the data buffer)`);
    cursor = s.end;
  }
  if (cursor > dataLen) fail(`is truncated (header says ${8 + n + cursor} bytes, file has ${buf.length})`);
  if (cursor < dataLen) fail(`has ${dataLen - cursor} unexpected bytes after the last tensor (header says ${8 + n + cursor} bytes, file has ${buf.length})`);

  const tensors: TensorMap = {};
  const base = buf.byteOffset + 8 + n;
  for (const s of specs) {
    const bytes = buf.buffer.slice(base + s.begin, base + s.end) as ArrayBuffer;
    tensors[s.name] = s.dtype === 'F32' ? { dtype: 'F32', shape: s.shape, data: new Float32Array(bytes) }
      : s.dtype === 'I32' ? { dtype: 'I32', shape: s.shape, data: new Int32Array(bytes) }
      : { dtype: 'U8', shape: s.shape, data: new Uint8Array(bytes) };
  }
  return { tensors, metadata };
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
