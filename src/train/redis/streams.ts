/**
 * Thin typed helpers over ioredis for the Redis Streams operations the rollout queue uses, and the
 * keys of one run. Every run lives under its key prefix K:
 *
 *   K:tasks      stream of task messages (trainer → workers), consumer group `workers`
 *   K:results    stream of results (workers → trainer), consumer group `trainer`
 *   K:weights    {version, path} of the newest published weights (a file on shared disk)
 *   K:cancelled  set of task ids the trainer no longer wants (group failed, run stopped)
 *   K:done       set when the trainer has finished: workers exit
 *
 * Replies are parsed from `call` rather than through ioredis's overloads, so each helper states
 * exactly what it returns; connections speak RESP2 (ioredis 6 defaults to RESP3, whose maps arrive
 * flattened), and XREADGROUP's reply is read in either form.
 */
import { Redis } from 'ioredis';

export const WORKERS_GROUP = 'workers';
export const TRAINER_GROUP = 'trainer';

export interface RunKeys {
  tasks: string;
  results: string;
  weights: string;
  cancelled: string;
  done: string;
}

export function runKeys(prefix: string): RunKeys {
  return { tasks: `${prefix}:tasks`, results: `${prefix}:results`, weights: `${prefix}:weights`, cancelled: `${prefix}:cancelled`, done: `${prefix}:done` };
}

export type Fields = Record<string, string>;

export interface StreamEntry {
  id: string;
  fields: Fields;
}

/** One pending (delivered, unacknowledged) entry: who holds it, for how long, how often delivered. */
export interface PendingEntry {
  id: string;
  consumer: string;
  idleMs: number;
  deliveries: number;
}

/**
 * Connect, failing with a message naming the URL and the fix rather than retrying forever. After the
 * first connection ioredis reconnects on its own (a restarted Redis is picked up again).
 */
export async function connectRedis(url: string, name: string): Promise<Redis> {
  let r: Redis;
  try {
    r = new Redis(url, { lazyConnect: true, connectionName: name, maxRetriesPerRequest: null, enableAutoPipelining: false, protocol: 2 });
  } catch (e) {
    throw new Error(`invalid Redis URL '${url}': ${(e as Error).message} (expected redis://HOST:PORT[/DB])`);
  }
  // Reconnects are ioredis's business and command errors reach their callers; the socket's own
  // error (ECONNREFUSED …) is kept because connect() only reports 'Connection is closed'.
  let socketError: Error | null = null;
  r.on('error', (e: Error) => (socketError ??= e));
  try {
    await r.connect();
  } catch (e) {
    r.disconnect();
    throw new Error(`cannot connect to Redis at ${url} (${(socketError ?? (e as Error)).message}); start redis-server there or fix rollout.url / --redis`);
  }
  return r;
}

/** Create a consumer group (and the stream) unless it exists; `from` '0' = deliver every entry already there. */
export async function ensureGroup(r: Redis, stream: string, group: string, from = '0'): Promise<void> {
  try {
    await r.call('XGROUP', 'CREATE', stream, group, from, 'MKSTREAM');
  } catch (e) {
    if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
  }
}

export async function xadd(r: Redis, stream: string, fields: Fields): Promise<string> {
  return (await r.call('XADD', stream, '*', ...Object.entries(fields).flat())) as string;
}

function toFields(flat: string[] | null): Fields {
  const out: Fields = {};
  if (!flat) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

function toEntries(raw: unknown): StreamEntry[] {
  return ((raw ?? []) as [string, string[] | null][]).filter(([, f]) => f !== null).map(([id, f]) => ({ id, fields: toFields(f) }));
}

/** XREADGROUP of new entries (`>`), blocking up to `blockMs`; [] when none came. Use a connection of its own. */
export async function readGroup(r: Redis, stream: string, group: string, consumer: string, count: number, blockMs: number): Promise<StreamEntry[]> {
  const reply = (await r.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', stream, '>')) as unknown[] | null;
  if (!reply || reply.length === 0) return [];
  // RESP2: [[stream, entries]]; RESP3 (a map, flattened by ioredis): [stream, entries].
  if (typeof reply[0] === 'string') return toEntries(reply[1]);
  return (reply as [string, unknown][]).flatMap(([, entries]) => toEntries(entries));
}

export async function ack(r: Redis, stream: string, group: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return (await r.call('XACK', stream, group, ...ids)) as number;
}

export async function del(r: Redis, stream: string, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return (await r.call('XDEL', stream, ...ids)) as number;
}

/**
 * XAUTOCLAIM: take over up to `count` entries idle for at least `minIdleMs` (their consumer died or
 * stalled). Entries deleted meanwhile (their task finished) drop out of the pending list and are
 * not returned. Scans the whole pending list from the start.
 */
export async function autoClaim(r: Redis, stream: string, group: string, consumer: string, minIdleMs: number, count: number): Promise<StreamEntry[]> {
  const out: StreamEntry[] = [];
  let cursor = '0-0';
  do {
    const [next, entries] = (await r.call('XAUTOCLAIM', stream, group, consumer, minIdleMs, cursor, 'COUNT', count - out.length)) as [string, unknown, unknown];
    out.push(...toEntries(entries));
    cursor = next;
  } while (cursor !== '0-0' && out.length < count);
  return out;
}

/** Reset the idle time of entries this consumer is working on (a heartbeat), without counting a delivery. */
export async function touch(r: Redis, stream: string, group: string, consumer: string, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  return (await r.call('XCLAIM', stream, group, consumer, 0, ...ids, 'JUSTID')) as string[];
}

/** Hand entries back at once: mark them idle for `idleMs` so the next XAUTOCLAIM of any worker takes them. */
export async function release(r: Redis, stream: string, group: string, consumer: string, ids: string[], idleMs: number): Promise<void> {
  if (ids.length === 0) return;
  await r.call('XCLAIM', stream, group, consumer, 0, ...ids, 'IDLE', idleMs, 'JUSTID');
}

/** Pending entries of the group (optionally only one consumer's), oldest first. */
export async function pending(r: Redis, stream: string, group: string, opts: { consumer?: string; count?: number; from?: string; to?: string } = {}): Promise<PendingEntry[]> {
  const args: (string | number)[] = [stream, group, opts.from ?? '-', opts.to ?? '+', opts.count ?? 1000];
  if (opts.consumer) args.push(opts.consumer);
  const reply = (await r.call('XPENDING', ...args)) as [string, string, number, number][];
  return reply.map(([id, consumer, idleMs, deliveries]) => ({ id, consumer, idleMs: Number(idleMs), deliveries: Number(deliveries) }));
}

/** Entries of a stream by id range (XRANGE). */
export async function range(r: Redis, stream: string, from = '-', to = '+'): Promise<StreamEntry[]> {
  return toEntries(await r.call('XRANGE', stream, from, to));
}
