/** Reading a run config file (YAML, or JSON — YAML is a superset) with `--set key=value` overrides. */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { applyOverrides } from '../run/run-config.ts';

export function readConfigFile(path: string, sets: readonly string[] = []): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read config ${path}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new Error(`config ${path} is not valid YAML/JSON: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`config ${path} must be a mapping of fields (task, model, trainer, …)`);
  return applyOverrides(raw as Record<string, unknown>, sets);
}
