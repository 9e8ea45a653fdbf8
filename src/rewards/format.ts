/**
 * The search agent's tag protocol (ASearcher): the model reasons in `<think> … </think>`, then acts with
 * one of `<search> query </search>`, `<access> url </access>`, `<answer> … </answer>`; the environment
 * answers in `<information> … </information>`. The prompt itself opens the first `<think>` (and the
 * environment reopens one after every tool result), so a well-formed model turn only ever closes it.
 *
 * Two readings of a turn live here: `parseTurn` (which action does this turn take?) and the format
 * check behind ASearcher's reward `format × F1` (is every turn well-formed?).
 */
import { pyStrip } from './squad.ts';

/** Tool tags in ASearcher's priority order (search > access > answer). */
export const TOOL_TAGS = ['search', 'access', 'answer'] as const;
export type ToolTag = (typeof TOOL_TAGS)[number];
export const SEARCH_TAG = 'search' satisfies ToolTag;
export const ACCESS_TAG = 'access' satisfies ToolTag;
export const ANSWER_TAG = 'answer' satisfies ToolTag;
export const THINK_TAG = 'think';
/** Written by the environment around tool results; never by the model. */
export const INFORMATION_TAG = 'information';

export const openTag = (name: string): string => `<${name}>`;
export const closeTag = (name: string): string => `</${name}>`;
/** Generation stops after a tool call's closing tag (one action per turn). */
export const TOOL_STOP_STRINGS: readonly string[] = TOOL_TAGS.map(closeTag);

/**
 * 'strict' (default): tags must pair up in order (rules at checkTurnFormat and parseTurn).
 * 'asearcher': exactly the released `correct_format_fn` / `consume_llm_response` (tag *counts* only,
 * any "Assistant"/"assistant" substring is a role leak; parsing takes the last match of each tag and
 * the first of search > access > answer, never 'invalid').
 */
export type FormatMode = 'strict' | 'asearcher';

export interface FormatOptions {
  mode?: FormatMode;
  /**
   * Strict mode: true (default) when the prompt opens `<think>` for the model, as ASearcher's prompts do,
   * so a model-written `<think>` is a format error; false when the model opens its own (then at most
   * one `<think>`, before its `</think>`).
   */
  promptOpensThink?: boolean;
}

export interface FormatVerdict {
  ok: boolean;
  /** Why the format is wrong (null when ok). */
  reason: string | null;
}

export type TurnKind = ToolTag | 'none' | 'invalid';

export interface ParsedTurn {
  kind: TurnKind;
  /** The tag's content, stripped of surrounding whitespace (the query, URL or answer); null for 'none'/'invalid'. */
  arg: string | null;
  /** Why the turn is 'invalid' or 'none'; null when it is an action. */
  reason: string | null;
}

interface ToolPair {
  tag: ToolTag;
  content: string;
}

const TOOL_TAG_RE = /<(\/?)(search|access|answer)>/g;

/** Pair the tool tags of a turn in order; the first problem (stray, nested, mismatched, unclosed tag) is returned as a reason. */
function pairToolTags(text: string): { pairs: ToolPair[]; error: string | null } {
  const pairs: ToolPair[] = [];
  let open: { tag: ToolTag; end: number } | null = null;
  for (const m of text.matchAll(TOOL_TAG_RE)) {
    const closing = m[1] === '/';
    const tag = m[2] as ToolTag;
    if (!closing) {
      if (open) return { pairs, error: `${openTag(tag)} opened inside ${openTag(open.tag)}` };
      open = { tag, end: m.index + m[0].length };
    } else if (!open) {
      return { pairs, error: `${closeTag(tag)} without ${openTag(tag)}` };
    } else if (open.tag !== tag) {
      return { pairs, error: `${closeTag(tag)} closes ${openTag(open.tag)}` };
    } else {
      pairs.push({ tag, content: text.slice(open.end, m.index) });
      open = null;
    }
  }
  if (open) return { pairs, error: `unclosed ${openTag(open.tag)}` };
  return { pairs, error: null };
}

function count(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

const fail = (reason: string): FormatVerdict => ({ ok: false, reason });
const OK: FormatVerdict = { ok: true, reason: null };

/** ASearcher's `correct_format_fn`, verbatim. */
function asearcherTurnFormat(text: string): FormatVerdict {
  for (const tag of TOOL_TAGS) {
    if (count(text, openTag(tag)) !== count(text, closeTag(tag))) return fail(`unbalanced ${openTag(tag)} tags`);
  }
  if (TOOL_TAGS.reduce((n, tag) => n + count(text, openTag(tag)), 0) > 1) return fail('more than one tool tag in one turn');
  if (text.includes('Assistant') || text.includes('assistant')) return fail('role leak: the turn contains "Assistant"');
  if (count(text, closeTag(THINK_TAG)) > 1) return fail(`more than one ${closeTag(THINK_TAG)}`);
  return OK;
}

/** A model writing the next role marker has run past its own turn. */
const ROLE_LEAK_RE = /(?<![\p{L}\p{N}_])[Aa]ssistant[ \t]*:|<\|im_start\|>/u;

/**
 * Is one model turn well-formed? Strict rules: no `<information>`/`</information>` (the environment's
 * tags); tool tags pair up in order, unnested; at most one tool call; no "Assistant:" role marker
 * (nor a chat-template `<|im_start|>`); at most one `</think>`, and no `<think>` when the prompt opens it.
 */
export function checkTurnFormat(text: string, options: FormatOptions = {}): FormatVerdict {
  if ((options.mode ?? 'strict') === 'asearcher') return asearcherTurnFormat(text);
  for (const tag of [openTag(INFORMATION_TAG), closeTag(INFORMATION_TAG)]) {
    if (text.includes(tag)) return fail(`the model wrote ${tag} (only tool results are wrapped in it)`);
  }
  const { pairs, error } = pairToolTags(text);
  if (error) return fail(`unbalanced tool tags: ${error}`);
  if (pairs.length > 1) return fail(`${pairs.length} tool calls in one turn (${pairs.map((p) => openTag(p.tag)).join(', ')}); at most one is allowed`);
  const leak = ROLE_LEAK_RE.exec(text);
  if (leak) return fail(`role leak: the turn contains ${JSON.stringify(leak[0])}`);
  const closes = count(text, closeTag(THINK_TAG));
  if (closes > 1) return fail(`${closes} × ${closeTag(THINK_TAG)}; at most one is allowed`);
  const opens = count(text, openTag(THINK_TAG));
  if (options.promptOpensThink ?? true) {
    if (opens > 0) return fail(`the model wrote ${openTag(THINK_TAG)}, but the prompt already opens it`);
  } else {
    if (opens > 1) return fail(`${opens} × ${openTag(THINK_TAG)}; at most one is allowed`);
    if (closes > 0 && (opens === 0 || text.indexOf(openTag(THINK_TAG)) > text.indexOf(closeTag(THINK_TAG)))) {
      return fail(`${closeTag(THINK_TAG)} without a preceding ${openTag(THINK_TAG)}`);
    }
    if (opens > closes) return fail(`unclosed ${openTag(THINK_TAG)}`);
  }
  return OK;
}

/** Is every model turn of a trajectory well-formed? (ASearcher: format reward = all turns pass.) The reason names the first bad turn (0-based). */
export function checkTrajectoryFormat(turns: readonly string[], options: FormatOptions = {}): FormatVerdict {
  for (let i = 0; i < turns.length; i++) {
    const v = checkTurnFormat(turns[i]!, options);
    if (!v.ok) return fail(`turn ${i}: ${v.reason}`);
  }
  return OK;
}

/** The content of the last `<tag>…</tag>` match (non-greedy, across lines), as Python's re.findall(...)[-1]. */
function lastMatch(text: string, tag: ToolTag): string | null {
  let last: string | null = null;
  for (const m of text.matchAll(new RegExp(`${openTag(tag)}([\\s\\S]*?)${closeTag(tag)}`, 'g'))) last = m[1]!;
  return last;
}

const NO_TOOL = `no ${TOOL_TAGS.map(openTag).join(', ')} tag`;

/**
 * Which action does a model turn take? The last match of its tool tag, stripped. Strict mode: two
 * different tool tags, or tool tags that do not pair up, make the turn 'invalid' (with the reason);
 * the same tag twice takes the last (the format check still fails it). 'asearcher' mode: the first of
 * search > access > answer that matches anywhere, unpaired tags ignored.
 */
export function parseTurn(text: string, options: Pick<FormatOptions, 'mode'> = {}): ParsedTurn {
  if ((options.mode ?? 'strict') === 'asearcher') {
    for (const tag of TOOL_TAGS) {
      const arg = lastMatch(text, tag);
      if (arg !== null) return { kind: tag, arg: pyStrip(arg), reason: null };
    }
    return { kind: 'none', arg: null, reason: NO_TOOL };
  }
  const { pairs, error } = pairToolTags(text);
  if (error) return { kind: 'invalid', arg: null, reason: `unbalanced tool tags: ${error}` };
  const kinds = TOOL_TAGS.filter((t) => pairs.some((p) => p.tag === t));
  if (kinds.length > 1) return { kind: 'invalid', arg: null, reason: `two different tool tags in one turn: ${kinds.map(openTag).join(' and ')}` };
  const last = pairs.at(-1);
  if (!last) return { kind: 'none', arg: null, reason: NO_TOOL };
  return { kind: last.tag, arg: pyStrip(last.content), reason: null };
}
