/**
 * A scripted searcher for the synthetic knowledge base's chain questions (src/synth/kb.ts), reading
 * only what the agent sees: at hop h it searches "r_h of X" (X the start entity, then the entity the
 * last hop found), reads the fact "the r_h of X is Y ." in the results, and answers Y after the last
 * hop. It makes the SFT demonstrations and is the upper reference of the learning result.
 */
import type { ScriptedPolicy } from '../../engine/scripted-engine.ts';

/** Relations (first hop first) and start name of "what is the r_k of … the r_1 of NAME ?". */
export function parseChainQuestion(text: string): { relations: string[]; start: string } | null {
  const m = /what is ((?:the \S+ of )+)(.+?) \?/.exec(text);
  if (!m) return null;
  const relations = [...m[1]!.matchAll(/the (\S+) of /g)].map((x) => x[1]!).reverse();
  return { relations, start: m[2]!.trim() };
}

const lastBetween = (text: string, open: string, close: string): string | null => {
  const end = text.lastIndexOf(close);
  if (end < 0) return null;
  const start = text.lastIndexOf(open, end);
  return start < 0 ? null : text.slice(start + open.length, end).trim();
};

/** The oracle's next turn, or `<answer> unknown </answer>` when the context does not have what it needs. */
export const kbOraclePolicy: ScriptedPolicy = (context) => {
  const q = parseChainQuestion(context);
  if (!q) return '<answer> unknown </answer>';
  const done = context.split('</search>').length - 1;
  if (done === 0) return `<search> ${q.relations[0]} of ${q.start} </search>`;
  const query = lastBetween(context, '<search>', '</search>');
  const info = lastBetween(context, '<information>', '</information>');
  const relation = q.relations[done - 1];
  const of = query?.indexOf(' of ') ?? -1;
  if (!query || of < 0 || !info || !relation) return '<answer> unknown </answer>';
  const subject = query.slice(of + 4);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const fact = new RegExp(`the ${esc(relation)} of ${esc(subject)} is (.+?) \\.`).exec(info);
  if (!fact) return '<answer> unknown </answer>';
  return done >= q.relations.length ? `<answer> ${fact[1]} </answer>` : `<search> ${q.relations[done]} of ${fact[1]} </search>`;
};
