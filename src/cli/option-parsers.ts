/**
 * Commander argument parsers for numeric options: each rejects with an InvalidArgumentError that
 * quotes the value, so commander reports `option '--x <n>' argument 'abc' is invalid. expected …`.
 */
import { InvalidArgumentError } from 'commander';

export function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`expected an integer, got '${v}'`);
  return n;
}

export function positiveInt(v: string): number {
  const n = int(v);
  if (n < 1) throw new InvalidArgumentError(`expected an integer ≥ 1, got '${v}'`);
  return n;
}

/** A finite number (an empty string is not 0). */
export function num(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got '${v}'`);
  return n;
}

export function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port number 0–65535, got '${v}'`);
  return n;
}
