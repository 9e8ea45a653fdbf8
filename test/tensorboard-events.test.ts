/**
 * TensorBoard export (src/eval/tensorboard.ts): CRC32C against the standard check value and the
 * iSCSI test vectors (RFC 3720 B.4), TFRecord's masked CRC, the Event encoding byte for byte against
 * what TensorBoard's own protobuf classes serialise (bytes taken from event_pb2 of tensorboard
 * 2.21), and a run's metrics.jsonl written as event files and read back — every record's CRCs
 * checked, every scalar decoded to its float32 value, file_version first, one file per population
 * member — plus the CSV export.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c, decodeEvent, encodeEvent, eventFile, maskedCrc32c, metricsCsv, readEventFile, readTfRecords, scalarsOf, tfRecord, writeTensorBoard } from '../src/eval/tensorboard.ts';
import { tempDirs } from './helpers/temp-dirs.ts';

const tmp = tempDirs('agentrl-tb-');

describe('CRC32C and TFRecord framing', () => {
  it('the standard check value and the RFC 3720 vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('the masked CRC: rotate right by 15, add 0xa282ead8', () => {
    // 0xe3069283 rotated right by 15 is 0x2507c60d; + 0xa282ead8 = 0xc78ab0e5 (mod 2^32).
    expect(maskedCrc32c(Buffer.from('123456789'))).toBe(0xc78ab0e5);
  });

  it('a record is length, its masked CRC, the data, its masked CRC; a flipped bit is caught', () => {
    const data = Buffer.from('hello');
    const rec = tfRecord(data);
    expect(rec.length).toBe(8 + 4 + 5 + 4);
    expect(rec.readBigUInt64LE(0)).toBe(5n);
    expect(rec.readUInt32LE(8)).toBe(maskedCrc32c(rec.subarray(0, 8)));
    expect(rec.subarray(12, 17).toString()).toBe('hello');
    expect(rec.readUInt32LE(17)).toBe(maskedCrc32c(data));
    expect(readTfRecords(Buffer.concat([rec, rec])).map((r) => Buffer.from(r).toString())).toEqual(['hello', 'hello']);
    const bad = Buffer.from(rec);
    bad[13] ^= 1;
    expect(() => readTfRecords(bad)).toThrow(/data CRC mismatch/);
    const badLen = Buffer.from(rec);
    badLen[0] = 6;
    expect(() => readTfRecords(badLen)).toThrow(/length CRC mismatch/);
    expect(() => readTfRecords(rec.subarray(0, 15))).toThrow(/truncated/);
  });
});

describe('Event protobuf', () => {
  const hex = (u: Uint8Array) => Buffer.from(u).toString('hex');
  it('encodes exactly as TensorBoard\'s event_pb2 serialises', () => {
    // event_pb2.Event(wall_time=1.5, step=3) with summary.value.add(tag='loss', simple_value=0.25)
    expect(hex(encodeEvent({ wallTime: 1.5, step: 3, values: [{ tag: 'loss', value: 0.25 }] }))).toBe('09000000000000f83f10032a0d0a0b0a046c6f7373150000803e');
    // event_pb2.Event(wall_time=100.0, step=-1): int64 −1 is a ten-byte varint
    expect(hex(encodeEvent({ wallTime: 100, step: -1 }))).toBe('09000000000000594010ffffffffffffffffff01');
    // event_pb2.Event(wall_time=1700000000.0, file_version='brain.Event:2')
    expect(hex(encodeEvent({ wallTime: 1_700_000_000, fileVersion: 'brain.Event:2' }))).toBe('0900000040fc54d9411a0d627261696e2e4576656e743a32');
  });

  it('decodes back what it encodes (step, wall time, tags, float32 values)', () => {
    const e = decodeEvent(encodeEvent({ wallTime: 1234.5, step: 300, values: [{ tag: 'a/b', value: 0.1 }, { tag: 'c', value: -7 }] }));
    expect(e).toEqual({ wallTime: 1234.5, step: 300, values: [{ tag: 'a/b', value: Math.fround(0.1) }, { tag: 'c', value: -7 }] });
    expect(decodeEvent(encodeEvent({ wallTime: 1, step: -1 })).step).toBe(-1);
    const file = readTfRecords(eventFile([{ wallTime: 2, step: 0, values: [] }], 1)).map(decodeEvent);
    expect(file[0]).toEqual({ wallTime: 1, step: 0, fileVersion: 'brain.Event:2', values: [] });
  });
});

const line = (i: number) => ({
  step: i, version: i, seconds: 2, meanReward: i / 10, episodeReward: [0.1, 0.2 * i], winRate: [0, 1],
  staleness: { 0: 1, 2: 1 }, tokenStaleness: { 1: 4 }, processedTokens: 1000, trainedTokens: 100,
  loss: -0.01, generationOccupancy: null, kl: 0,
});

describe('scalarsOf', () => {
  it('every finite number under its path, histograms by bucket, derived rates; no x-axis fields, no nulls', () => {
    const s = Object.fromEntries(scalarsOf(line(3)).map((x) => [x.tag, x.value]));
    expect(s).toEqual({
      version: 3, seconds: 2, meanReward: 0.3, 'episodeReward/0': 0.1, 'episodeReward/1': 0.2 * 3, 'winRate/0': 0, 'winRate/1': 1,
      'staleness/0': 1, 'staleness/2': 1, 'tokenStaleness/1': 4, processedTokens: 1000, trainedTokens: 100, loss: -0.01, kl: 0,
      'derived/processedTokensPerSecond': 500, 'derived/trainedTokensPerSecond': 50, 'derived/stalenessMean': 1, 'derived/tokenStalenessMean': 1,
    });
  });
});

describe('scalarsOf: nested per-opponent statistics', () => {
  it('byOpponent paths, the no-opponent key as _', () => {
    const s = scalarsOf({ byOpponent: { '': { winRate: [1] }, cfr: { meanReward: 0.5, winRate: [0, 0.25] } } }).map((x) => `${x.tag}=${x.value}`);
    expect(s).toEqual(['byOpponent/_/winRate/0=1', 'byOpponent/cfr/meanReward=0.5', 'byOpponent/cfr/winRate/0=0', 'byOpponent/cfr/winRate/1=0.25']);
  });
});

describe('writeTensorBoard', () => {
  it('a single run: one event file under RUN/tb, file_version first, one event per line with its step and wall time', () => {
    const d = tmp();
    writeFileSync(join(d, 'metrics.jsonl'), [0, 1, 2].map((i) => JSON.stringify(line(i)) + '\n').join('') + '{"step":3,"ver');
    const warnings: string[] = [];
    const files = writeTensorBoard(d, { endWallTime: 1000, host: 'testhost', warn: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    // Three steps of 2 s ending at t = 1000: they end at 996, 998, 1000 and the run started at 994.
    expect(files).toEqual([join(d, 'tb', 'events.out.tfevents.994.testhost')]);
    const events = readEventFile(files[0]!);
    expect(events[0]).toEqual({ wallTime: 994, step: 0, fileVersion: 'brain.Event:2', values: [] });
    expect(events.slice(1).map((e) => [e.step, e.wallTime])).toEqual([[0, 996], [1, 998], [2, 1000]]);
    for (const [i, e] of events.slice(1).entries()) {
      const want = scalarsOf(line(i)).map((x) => ({ tag: x.tag, value: Math.fround(x.value) }));
      expect(e.values).toEqual(want);
    }
    expect(events[3]!.values.find((v) => v.tag === 'meanReward')!.value).toBe(Math.fround(0.2));
    // Exported again: the old file is replaced, not left for TensorBoard to read as more of the run.
    writeTensorBoard(d, { endWallTime: 2000, host: 'testhost' });
    expect(readdirSync(join(d, 'tb'))).toEqual(['events.out.tfevents.1994.testhost']);
  });

  it('a population run: one directory per member (TensorBoard overlays them as runs), step = round', () => {
    const d = tmp();
    const rows = [
      { round: 1, member: 'm0', seconds: 1, meanReward: -0.25, opponents: { conservative: { trials: 16, score: 6 } } },
      { round: 1, member: 'm1', seconds: 1, meanReward: 1 },
      { round: 2, member: 'm0', seconds: 1, meanReward: -0.875 },
      { round: 2, member: 'm1', seconds: 1, meanReward: 0.5 },
    ];
    writeFileSync(join(d, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const files = writeTensorBoard(d, { endWallTime: 100, host: 'h' });
    expect(files.map((f) => f.slice(d.length + 1))).toEqual(['tb/m0/events.out.tfevents.96.h', 'tb/m1/events.out.tfevents.97.h']);
    const m0 = readEventFile(files[0]!).slice(1);
    expect(m0.map((e) => [e.step, e.wallTime, e.values.find((v) => v.tag === 'meanReward')!.value])).toEqual([[1, 97, -0.25], [2, 99, -0.875]]);
    expect(m0[0]!.values.find((v) => v.tag === 'opponents/conservative/score')!.value).toBe(6);
  });
});

describe('metricsCsv', () => {
  it('one row per line, the union of scalar columns in first-seen order, empty cells for missing values', () => {
    const csv = metricsCsv([{ step: 0, loss: 1, episodeReward: [0.5] }, { step: 1, loss: 0.5, kl: 0.01 }]);
    expect(csv).toBe('step,loss,episodeReward/0,kl\n0,1,0.5,\n1,0.5,,0.01\n');
    const pop = metricsCsv([{ round: 1, member: 'a,b', meanReward: 1 }]);
    expect(pop).toBe('round,member,meanReward\n1,"a,b",1\n');
  });
});
