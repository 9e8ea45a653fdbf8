/**
 * TensorBoard event files for a run's metrics, so TensorBoard (or anything reading tfevents:
 * tbparse, the TensorFlow summary iterator, W&B's tensorboard sync) opens an agentrl run.
 *
 * Format (TensorFlow's record_writer.cc and event.proto / summary.proto):
 *   file       events.out.tfevents.<unix seconds>.<host>
 *   record     uint64 length (LE) · uint32 masked CRC32C of those 8 bytes · data · uint32 masked CRC32C of data
 *   mask       ((crc >>> 15) | (crc << 17)) + 0xa282ead8   (mod 2³²)
 *   Event      1: wall_time double · 2: step int64 · 3: file_version string · 5: summary Summary
 *   Summary    1: repeated Value;  Value: 1: tag string · 2: simple_value float
 * The first record is an Event with file_version "brain.Event:2"; then one Event per metrics line
 * holding every finite scalar of the line.
 *
 * The protobuf encoding needed is four field types of two messages, so it is written here (about
 * thirty lines) rather than taking a protobuf runtime and TensorFlow's .proto files as dependencies;
 * CRC32C is a table-driven loop for the same reason. The reader below (CRC-checked) is what the
 * tests use to decode the files back.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { histogramMean, readRunMetrics, type MetricsRow } from './run-plots.ts';

// ---------- CRC32C (Castagnoli, reflected polynomial 0x82f63b78) ----------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC (a CRC of data that holds CRCs is otherwise degenerate). */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// ---------- protobuf encoding (the few wire types an Event needs) ----------

function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n); // negative int64s are ten-byte two's complement varints
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const key = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
function bytesField(field: number, data: Uint8Array | number[]): number[] {
  return [...key(field, 2), ...varint(BigInt(data.length)), ...data];
}
function doubleField(field: number, v: number): number[] {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return [...key(field, 1), ...b];
}
function floatField(field: number, v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...key(field, 5), ...b];
}

export interface ScalarEvent {
  wallTime: number;
  step: number;
  values: { tag: string; value: number }[];
}

/** An Event message: file_version only (the first record), or a summary of scalars. */
export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; values?: { tag: string; value: number }[] }): Uint8Array {
  const out = doubleField(1, e.wallTime);
  if (e.step !== undefined && e.step !== 0) out.push(...key(2, 0), ...varint(BigInt(e.step)));
  if (e.fileVersion !== undefined) out.push(...bytesField(3, Buffer.from(e.fileVersion, 'utf8')));
  if (e.values && e.values.length > 0) {
    const summary = e.values.flatMap((v) => bytesField(1, [...bytesField(1, Buffer.from(v.tag, 'utf8')), ...floatField(2, v.value)]));
    out.push(...bytesField(5, summary));
  }
  return Uint8Array.from(out);
}

/** One TFRecord: length, its masked CRC, the data, its masked CRC. */
export function tfRecord(data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(data.length));
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  head.copy(out, 0);
  out.writeUInt32LE(maskedCrc32c(head), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

/** A complete event file: the file_version record, then the scalar events. */
export function eventFile(events: ScalarEvent[], startWallTime: number): Buffer {
  const records = [tfRecord(encodeEvent({ wallTime: startWallTime, fileVersion: 'brain.Event:2' }))];
  for (const e of events) records.push(tfRecord(encodeEvent(e)));
  return Buffer.concat(records);
}

// ---------- metrics.jsonl → scalars ----------

/** Fields that are the x axis (or labels), not metrics. */
const NOT_SCALARS = new Set(['step', 'round', 'member']);

/**
 * Every finite number of a metrics line under its path ('loss', 'episodeReward/2',
 * 'staleness/0', 'byOpponent/random/winRate/2', 'hyper/lr', 'opponents/aggressive/score'), plus derived rates TensorBoard cannot
 * compute itself: 'derived/processedTokensPerSecond', 'derived/trainedTokensPerSecond' and the
 * mean staleness of groups and tokens.
 */
export function scalarsOf(row: MetricsRow): { tag: string; value: number }[] {
  const out: { tag: string; value: number }[] = [];
  const walk = (v: unknown, path: string) => {
    if (typeof v === 'number') {
      if (Number.isFinite(v)) out.push({ tag: path, value: v });
    } else if (typeof v === 'boolean') {
      out.push({ tag: path, value: v ? 1 : 0 });
    } else if (v !== null && typeof v === 'object') {
      // An empty key (byOpponent's '' = no opponent) would make 'byOpponent//winRate': name it '_'.
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, path ? `${path}/${k === '' ? '_' : k}` : k);
    }
  };
  for (const [k, v] of Object.entries(row)) if (!NOT_SCALARS.has(k)) walk(v, k);
  const seconds = row.seconds;
  const derived: [string, number][] = [
    ['derived/processedTokensPerSecond', typeof seconds === 'number' && seconds > 0 && typeof row.processedTokens === 'number' ? row.processedTokens / seconds : Number.NaN],
    ['derived/trainedTokensPerSecond', typeof seconds === 'number' && seconds > 0 && typeof row.trainedTokens === 'number' ? row.trainedTokens / seconds : Number.NaN],
    ['derived/stalenessMean', histogramMean(row.staleness)],
    ['derived/tokenStalenessMean', histogramMean(row.tokenStaleness)],
  ];
  for (const [tag, value] of derived) if (Number.isFinite(value)) out.push({ tag, value });
  return out;
}

export interface TensorBoardOptions {
  /** Directory for the event files (default RUN/tb). */
  outDir?: string;
  /** Wall time of the run's end, in seconds (default: metrics.jsonl's modification time). */
  endWallTime?: number;
  host?: string;
  warn?: (msg: string) => void;
}

/**
 * Write RUN/metrics.jsonl as TensorBoard event files: OUT/events.out.tfevents.* for a single run
 * (step = the line's index), OUT/<member>/events.out.tfevents.* for each member of a population
 * run (step = the round), so TensorBoard overlays the members as runs. Each event's wall time is
 * the run's end minus the seconds of the steps after it (metrics.jsonl records step durations, not
 * clock times). Event files already in OUT are replaced. Returns the files written.
 */
export function writeTensorBoard(runDir: string, o: TensorBoardOptions = {}): string[] {
  const { metricsPath, rows } = readRunMetrics(runDir, o.warn);
  if (rows.length === 0) return [];
  const outDir = o.outDir ?? join(runDir, 'tb');
  const end = o.endWallTime ?? statSync(metricsPath).mtimeMs / 1000;
  const host = (o.host ?? hostname()).replace(/[^A-Za-z0-9._-]/g, '_');
  const population = rows.some((r) => typeof r.member === 'string');
  const groups = population ? [...new Set(rows.map((r) => String(r.member)))].map((m) => [m, rows.filter((r) => r.member === m)] as const) : [['', rows] as const];
  // Wall times: the run's end minus the durations after each step (population members train one after another within a round).
  const wall = new Map<MetricsRow, number>();
  let t = end;
  for (let i = rows.length - 1; i >= 0; i--) {
    wall.set(rows[i]!, t);
    const s = rows[i]!.seconds;
    t -= typeof s === 'number' && Number.isFinite(s) ? s : 0;
  }
  const written: string[] = [];
  for (const [member, rs] of groups) {
    const dir = member ? join(outDir, member.replace(/[^A-Za-z0-9._-]/g, '_')) : outDir;
    mkdirSync(dir, { recursive: true });
    // A previous export's files would be read as more of the same run by TensorBoard: replace them.
    for (const f of readdirSync(dir)) if (f.startsWith('events.out.tfevents.')) rmSync(join(dir, f));
    const events = rs.map((r, i) => ({ wallTime: wall.get(r)!, step: population && typeof r.round === 'number' ? r.round : i, values: scalarsOf(r) }));
    const start = rs.length > 0 ? wall.get(rs[0]!)! - (typeof rs[0]!.seconds === 'number' ? (rs[0]!.seconds as number) : 0) : end;
    const path = join(dir, `events.out.tfevents.${Math.floor(start)}.${host}`);
    writeFileSync(path, eventFile(events, start));
    written.push(path);
  }
  return written;
}

// ---------- reading (tests, and a check that what was written decodes) ----------

export interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values: { tag: string; value: number }[];
}

interface Field { field: number; wire: number; value: bigint | Uint8Array }

function readVarint(b: Uint8Array, pos: { i: number }): bigint {
  let v = 0n, shift = 0n;
  for (;;) {
    if (pos.i >= b.length) throw new Error('protobuf: truncated varint');
    const x = b[pos.i++]!;
    v |= BigInt(x & 0x7f) << shift;
    if (!(x & 0x80)) return v;
    shift += 7n;
  }
}

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  const pos = { i: 0 };
  while (pos.i < b.length) {
    const k = Number(readVarint(b, pos));
    const field = k >>> 3, wire = k & 7;
    const take = (n: number) => {
      if (pos.i + n > b.length) throw new Error(`protobuf: field ${field} runs past the end`);
      const s = b.subarray(pos.i, pos.i + n);
      pos.i += n;
      return s;
    };
    if (wire === 0) out.push({ field, wire, value: readVarint(b, pos) });
    else if (wire === 1) out.push({ field, wire, value: take(8) });
    else if (wire === 2) out.push({ field, wire, value: take(Number(readVarint(b, pos))) });
    else if (wire === 5) out.push({ field, wire, value: take(4) });
    else throw new Error(`protobuf: unsupported wire type ${wire} (field ${field})`);
  }
  return out;
}

export function decodeEvent(data: Uint8Array): DecodedEvent {
  const e: DecodedEvent = { wallTime: Number.NaN, step: 0, values: [] };
  const view = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  for (const f of fields(data)) {
    if (f.field === 1 && f.wire === 1) e.wallTime = view(f.value as Uint8Array).readDoubleLE(0);
    else if (f.field === 2 && f.wire === 0) e.step = Number(BigInt.asIntN(64, f.value as bigint));
    else if (f.field === 3 && f.wire === 2) e.fileVersion = view(f.value as Uint8Array).toString('utf8');
    else if (f.field === 5 && f.wire === 2) {
      for (const v of fields(f.value as Uint8Array)) {
        if (v.field !== 1 || v.wire !== 2) continue;
        let tag = '', value = Number.NaN;
        for (const x of fields(v.value as Uint8Array)) {
          if (x.field === 1 && x.wire === 2) tag = view(x.value as Uint8Array).toString('utf8');
          else if (x.field === 2 && x.wire === 5) value = view(x.value as Uint8Array).readFloatLE(0);
        }
        e.values.push({ tag, value });
      }
    }
  }
  return e;
}

/** The records of an event file, each CRC checked; throws on a bad CRC or a truncated record. */
export function readTfRecords(buf: Buffer): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < buf.length) {
    if (i + 12 > buf.length) throw new Error(`tfrecord at byte ${i}: truncated header`);
    const head = buf.subarray(i, i + 8);
    if (buf.readUInt32LE(i + 8) !== maskedCrc32c(head)) throw new Error(`tfrecord at byte ${i}: length CRC mismatch`);
    const n = Number(buf.readBigUInt64LE(i));
    if (i + 12 + n + 4 > buf.length) throw new Error(`tfrecord at byte ${i}: truncated data (${n} bytes announced)`);
    const data = buf.subarray(i + 12, i + 12 + n);
    if (buf.readUInt32LE(i + 12 + n) !== maskedCrc32c(data)) throw new Error(`tfrecord at byte ${i}: data CRC mismatch`);
    out.push(data);
    i += 12 + n + 4;
  }
  return out;
}

export function readEventFile(path: string): DecodedEvent[] {
  return readTfRecords(readFileSync(path)).map(decodeEvent);
}

// ---------- CSV (spreadsheets, pandas) ----------

/**
 * The metrics as one CSV table: `step` (the line's index, or the round of a population run),
 * `member` for population runs, then a column per scalar path of scalarsOf in first-seen order;
 * a value a line lacks is an empty cell.
 */
export function metricsCsv(rows: MetricsRow[]): string {
  const population = rows.some((r) => typeof r.member === 'string');
  const scalars = rows.map(scalarsOf);
  const columns: string[] = [];
  const seen = new Set<string>();
  for (const s of scalars) for (const { tag } of s) if (!seen.has(tag)) (seen.add(tag), columns.push(tag));
  const cell = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const head = [population ? 'round' : 'step', ...(population ? ['member'] : []), ...columns];
  const lines = [head.map(cell).join(',')];
  rows.forEach((r, i) => {
    const byTag = new Map(scalars[i]!.map((s) => [s.tag, s.value]));
    const x = population && typeof r.round === 'number' ? r.round : i;
    lines.push([String(x), ...(population ? [cell(String(r.member ?? ''))] : []), ...columns.map((c) => (byTag.has(c) ? String(byTag.get(c)) : ''))].join(','));
  });
  return lines.join('\n') + '\n';
}
