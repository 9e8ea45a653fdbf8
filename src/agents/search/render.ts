/**
 * What the search agent's model reads: the instruction prompt, search results and page chunks, in
 * ASearcher's tags (`<search>`, `<access>`, `<answer>`, `<information>`, `[Doc i](url)`, `>>>> Page k >>>>`).
 */
import type { SearchHit } from '../../tools/types.ts';
import type { SearchAgentConfig } from './config.ts';

/** Model calls stop at the end of a tool call or an answer (ASearcher's stop strings). */
export const STOP_STRINGS = ['</search>', '</access>', '</answer>'] as const;

export function promptText(question: string, c: Pick<SearchAgentConfig, 'prompt' | 'allowAccess'>): string {
  if (c.prompt === 'bare') return `question : ${question}`;
  const tools = c.allowAccess
    ? 'To search, write <search> query </search>; the results come back between <information> and </information>. To read a web page, write <access> url </access>; long pages come back in parts.'
    : 'To search, write <search> query </search>; the results come back between <information> and </information>.';
  return [
    'Answer the question below. Reason step by step inside <think> </think> before every action.',
    tools,
    'Search as many times as you need. Make exactly one tool call per turn.',
    'When you are sure, give the final answer, a short phrase, as <answer> answer </answer>.',
    `Question: ${question}`,
  ].join('\n');
}

/** One hit as the template shows it, its contents cut to docChars. */
export function renderDoc(hit: SearchHit, i: number, c: Pick<SearchAgentConfig, 'docTemplate' | 'docChars'>): string {
  const contents = hit.contents.length > c.docChars ? hit.contents.slice(0, c.docChars) : hit.contents;
  return c.docTemplate.replace(/\{(i|url|title|contents)\}/g, (_, k: string) => (k === 'i' ? String(i) : k === 'url' ? hit.url : k === 'title' ? hit.title : contents));
}

export function searchInformation(hits: readonly SearchHit[], c: Pick<SearchAgentConfig, 'docTemplate' | 'docChars'>): string {
  if (hits.length === 0) return '<information> No search results are found. </information>';
  return `<information> ${hits.map((h, i) => renderDoc(h, i + 1, c)).join('\n')} </information>`;
}

export function pageInformation(chunk: string, k: number, total: number): string {
  return `<information> >>>> Page ${k} of ${total} >>>> ${chunk} </information>`;
}

/** What replaces a chunk once read: its start, cut at a word boundary (the model's own notes carry what mattered). */
export function shrunkPageInformation(chunk: string, k: number, total: number, shrinkChars: number): string {
  let start = chunk.slice(0, shrinkChars);
  if (chunk.length > shrinkChars && /\S/.test(chunk[shrinkChars]!)) start = start.replace(/\S*$/, '');
  return `<information> >>>> Page ${k} of ${total} >>>> ${start.trimEnd()} … </information>`;
}

export function errorInformation(message: string): string {
  return `<information> ${message} </information>`;
}
