/**
 * QA data sets for evaluating search agents, in the common JSONL shapes: one object per line with
 * `question` and gold answers as `golden_answers` (Search-R1 / FlashRAG), `answer` or `answers`
 * (a string or a list); optional `id`, `hops`, and a benchmark name in `benchmark`, `data_source` or
 * `source`. Every bad line is an error naming the file, the line and the field.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { SearchItem } from '../agents/search/config.ts';

function golds(v: unknown): string[] | null {
  if (typeof v === 'string') return v.trim() ? [v] : null;
  if (typeof v === 'number') return [String(v)];
  if (Array.isArray(v)) {
    const out = v.filter((x): x is string | number => typeof x === 'string' || typeof x === 'number').map(String).filter((x) => x.trim());
    return out.length > 0 && out.length === v.length ? out : null;
  }
  return null;
}

/** Parse one data line (1-based `lineNo` for messages). */
export function parseQaLine(line: string, lineNo: number, file: string): SearchItem {
  const where = `${file}:${lineNo}`;
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${where}: expected a JSON object with "question" and "golden_answers" (or "answer")`);
  const r = o as Record<string, unknown>;
  if (typeof r.question !== 'string' || !r.question.trim()) throw new Error(`${where}: "question" must be a non-empty string`);
  const field = ['golden_answers', 'answers', 'answer'].find((k) => r[k] !== undefined);
  if (!field) throw new Error(`${where}: no gold answers: give "golden_answers" (a list of strings) or "answer"`);
  const g = golds(r[field]);
  if (!g) throw new Error(`${where}: "${field}" must be a non-empty string or a non-empty list of non-empty strings`);
  const hops = r.hops;
  if (hops !== undefined && !(Number.isInteger(hops) && (hops as number) >= 1)) throw new Error(`${where}: "hops" must be an integer ≥ 1 when given`);
  const bench = [r.benchmark, r.data_source, r.source].find((x) => typeof x === 'string' && x.trim()) as string | undefined;
  const id = typeof r.id === 'string' || typeof r.id === 'number' ? String(r.id) : `${basename(file)}:${lineNo}`;
  return { id, question: r.question, golds: g, ...(hops !== undefined ? { hops: hops as number } : {}), benchmark: bench ?? basename(file).replace(/\.jsonl?$/, '') };
}

/** Every question of a JSONL file (blank lines skipped); ids must be unique. */
export function loadQaFile(file: string): SearchItem[] {
  const items: SearchItem[] = [];
  const seen = new Set<string>();
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const item = parseQaLine(line, i + 1, file);
    if (seen.has(item.id)) throw new Error(`${file}:${i + 1}: id ${JSON.stringify(item.id)} appears twice`);
    seen.add(item.id);
    items.push(item);
  });
  if (items.length === 0) throw new Error(`${file}: no questions`);
  return items;
}
