/**
 * JSON for what travels through Redis or sits in a checkpoint (task items, trajectories): plain
 * JSON, except that the two things JSON would silently corrupt are tagged — a Uint8Array (a token's constraint mask) becomes
 * `{"$u8": base64}` and a non-finite number (a −∞ logprob) `{"$num": "-Infinity"}` — and any other
 * typed array is refused rather than turned into an object of indices.
 */

export function encodeMessage(value: unknown): string {
  return JSON.stringify(value, function (this: unknown, _key: string, v: unknown) {
    if (typeof v === 'number' && !Number.isFinite(v)) return { $num: String(v) };
    if (v instanceof Uint8Array) return { $u8: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
    if (ArrayBuffer.isView(v)) throw new Error(`encodeMessage: cannot send a ${v.constructor.name} (only Uint8Array and plain arrays travel between trainer and workers)`);
    return v;
  });
}

export function decodeMessage<T = unknown>(text: string): T {
  return JSON.parse(text, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      if (keys.length === 1 && typeof o.$u8 === 'string') return new Uint8Array(Buffer.from(o.$u8, 'base64'));
      if (keys.length === 1 && typeof o.$num === 'string') return Number(o.$num);
    }
    return v;
  }) as T;
}
