/**
 * The long-horizon search agent (ASearcher): one growing context per question; each turn the model
 * writes one tool call or its answer, the tool's reply is appended as context (`TokenSource.tool`,
 * never trained), and the loop runs until an answer, `maxTurns` calls, the token budget, or EOS. Long
 * pages are read chunk by chunk; once read, a chunk shrinks to its start in later context (the
 * model's own note after it is what it keeps), which splits the trajectory into several training
 * sequences (src/agents/search/context.ts). Malformed output is a recorded, penalised turn; a tool
 * that fails after its retries is reported to the model and in the trajectory; nothing is silent.
 */
import type { Sample, Trajectory } from '../../core/types.ts';
import { TokenSource } from '../../core/types.ts';
import type { RolloutContext, RolloutWorkflow } from '../../core/workflow.ts';
import type { InferenceEngine } from '../../engine/types.ts';
import { hashString, mixSeed } from '../../envs/rng.ts';
import { checkTurnFormat, parseTurn } from '../../rewards/format.ts';
import { searchReward } from '../../rewards/score.ts';
import { splitIntoChunks } from '../../tools/page-reader.ts';
import type { PageReader, SearchBackend } from '../../tools/types.ts';
import { SearchAgentConfigSchema, type SearchAgentConfig, type SearchAgentConfigInput, type SearchItem, type SearchStop } from './config.ts';
import { SearchContext } from './context.ts';
import { errorInformation, pageInformation, promptText, searchInformation, shrunkPageInformation, STOP_STRINGS } from './render.ts';

export interface SearchTools {
  search: SearchBackend;
  /** Page reader for `<access>` (required when allowAccess). */
  access?: PageReader;
}

/** One turn as the trajectory records it (JSON-safe, for logs and the trajectory viewer). */
export interface SearchTurnLog {
  turn: number;
  action: 'search' | 'access' | 'answer' | 'read-on' | 'invalid';
  arg: string;
  modelTokens: number;
  toolTokens: number;
  /** Why the turn was invalid, a tool error, or a cut information block. */
  note?: string;
}

export interface SearchInfo {
  question: string;
  golds: string[];
  hops: number | null;
  prediction: string | null;
  stop: SearchStop;
  turns: number;
  searches: number;
  accesses: number;
  formatFailures: number;
  toolErrors: number;
  /** Information blocks cut to fit the token budget. */
  truncatedInformation: number;
  f1: number;
  em: number;
  /** Where the context was rewritten (one more training sequence each). */
  splits: { atTurn: number; tokens: number }[];
  log: SearchTurnLog[];
}

/** A page chunk in the context: its segment, text, and place among the page's chunks. */
interface ShownChunk {
  segment: number;
  chunk: string;
  k: number;
  total: number;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Run one search episode for `item`. */
export async function runSearchEpisode(engine: InferenceEngine, tools: SearchTools, c: SearchAgentConfig, item: SearchItem, ctx: Pick<RolloutContext, 'signal' | 'member' | 'attempt' | 'groupId'>): Promise<Trajectory> {
  const tok = engine.tokenizer;
  const budget = Math.min(c.maxTotalTokens, engine.contextLength ?? Number.POSITIVE_INFINITY);
  const sc = new SearchContext();
  sc.appendContext(tok.encode(promptText(item.question, c)), TokenSource.prompt);
  const log: SearchTurnLog[] = [];
  let seed = mixSeed(hashString(item.id), ctx.member * 7919 + ctx.attempt);
  let stop: SearchStop = 'max-turns';
  let prediction: string | null = null;
  let searches = 0, accesses = 0, formatFailures = 0, toolErrors = 0, truncatedInformation = 0;
  let page: { chunks: string[]; next: number } | null = null;
  /** The page chunk shown to the model last (shrunk once the model has taken a turn after it). */
  let unreadChunk: ShownChunk | null = null;
  let readChunk: ShownChunk | null = null;

  /** Append tool text, cut to leave room for the next call; its segment, or null when nothing fits. */
  const appendTool = (text: string, entry: SearchTurnLog): number | null => {
    let ids = tok.encode(text);
    const room = budget - c.maxNewTokens - sc.length;
    if (ids.length > room) {
      if (room <= 0) return null;
      entry.note = `${entry.note ? entry.note + '; ' : ''}information cut from ${ids.length} to ${room} tokens by the token budget`;
      ids = ids.slice(0, room);
      truncatedInformation++;
    }
    entry.toolTokens = ids.length;
    return sc.appendContext(ids, TokenSource.tool);
  };
  /** Show the page's next chunk; the chunk as placed in the context, or null when nothing fits. */
  const showChunk = (entry: SearchTurnLog): ShownChunk | null => {
    const p = page!;
    const k = p.next++;
    const segment = appendTool(pageInformation(p.chunks[k]!, k + 1, p.chunks.length), entry);
    return segment === null ? null : { segment, chunk: p.chunks[k]!, k: k + 1, total: p.chunks.length };
  };

  for (let turn = 0; ; turn++) {
    if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error('aborted');
    if (turn >= c.maxTurns) {
      stop = 'max-turns';
      break;
    }
    if (readChunk) {
      // The chunk shown before the previous turn has been read: later contexts keep only its start.
      const u = readChunk;
      sc.shrink(u.segment, tok.encode(shrunkPageInformation(u.chunk, u.k, u.total, c.shrinkChars)), turn);
      readChunk = null;
    }
    if (sc.length + c.maxNewTokens > budget) {
      stop = 'token-budget';
      break;
    }
    seed = mixSeed(seed, turn);
    const out = await engine.generate(sc.ids, {
      maxTokens: c.maxNewTokens, temperature: c.temperature, ...(c.topP < 1 ? { topP: c.topP } : {}),
      stop: [...STOP_STRINGS], seed, signal: ctx.signal,
    });
    sc.appendCompletion(out);
    readChunk = unreadChunk;
    unreadChunk = null;
    const act = parseTurn(out.text);
    const entry: SearchTurnLog = { turn, action: 'invalid', arg: act.arg ?? '', modelTokens: out.ids.length, toolTokens: 0 };
    log.push(entry);
    // A turn can act and still break the format (a tag repeated, a leaked role): it acts and is penalised.
    const fmt = act.kind === 'search' || act.kind === 'access' || act.kind === 'answer' ? checkTurnFormat(out.text, { promptOpensThink: false }) : null;
    if (fmt && !fmt.ok) {
      formatFailures++;
      entry.note = `format failure: ${fmt.reason}`;
    }
    if (act.kind === 'answer') {
      entry.action = 'answer';
      prediction = act.arg ?? '';
      stop = 'answer';
      break;
    }
    if (out.finishReason === 'eos' && act.kind === 'none') {
      entry.note = 'ended (EOS) without an answer';
      stop = 'eos';
      break;
    }
    let fits: number | null = 0;
    if (act.kind === 'search') {
      entry.action = 'search';
      searches++;
      page = null;
      let text: string;
      try {
        text = searchInformation(await tools.search.search(act.arg ?? '', c.topK, ctx.signal), c);
      } catch (e) {
        if (ctx.signal.aborted) throw e;
        toolErrors++;
        entry.note = `search failed: ${errorMessage(e)}`;
        text = errorInformation(`The search failed: ${errorMessage(e)}`);
      }
      fits = appendTool(text, entry);
    } else if (act.kind === 'access' && c.allowAccess && tools.access) {
      entry.action = 'access';
      accesses++;
      page = null;
      try {
        const doc = await tools.access.access(act.arg ?? '', ctx.signal);
        if (doc && doc.contents.length > 0) {
          page = { chunks: splitIntoChunks(doc.contents.slice(0, c.pageChars), c.chunkChars, c.maxChunks), next: 0 };
        } else {
          fits = appendTool(errorInformation('The page could not be read.'), entry);
        }
      } catch (e) {
        if (ctx.signal.aborted) throw e;
        toolErrors++;
        entry.note = `access failed: ${errorMessage(e)}`;
        fits = appendTool(errorInformation(`Reading the page failed: ${errorMessage(e)}`), entry);
      }
      if (page) {
        unreadChunk = showChunk(entry);
        fits = unreadChunk?.segment ?? null;
      }
    } else if (act.kind === 'none' && page && page.next < page.chunks.length) {
      // No new action after a chunk: the model is reading on.
      entry.action = 'read-on';
      unreadChunk = showChunk(entry);
      fits = unreadChunk?.segment ?? null;
    } else {
      formatFailures++;
      const why = act.kind === 'access' ? 'access is not available in this run' : (act.reason ?? 'no tool call or answer');
      entry.note = `format failure: ${why}`;
      page = null;
      fits = appendTool(errorInformation(`Invalid turn (${why}). Write one <search> query </search>${c.allowAccess ? ', <access> url </access>' : ''} or <answer> answer </answer>.`), entry);
    }
    if (fits === null) {
      stop = 'token-budget';
      break;
    }
  }

  const r = searchReward({ prediction, golds: item.golds, formatOk: formatFailures === 0 });
  const reward = r.score;
  const info: SearchInfo = {
    question: item.question, golds: item.golds, hops: item.hops ?? null, prediction, stop, turns: log.length,
    searches, accesses, formatFailures, toolErrors, truncatedInformation, f1: r.f1, em: r.em,
    splits: sc.splits, log,
  };
  // A sequence that ends right after a rewrite holds no sampled token: nothing to train on.
  const samples: Sample[] = sc.sequences().filter((seq) => seq.mask.includes(1)).map((seq) => ({ seq, reward, keys: { question: item.id }, temperature: c.temperature }));
  return { id: `${ctx.groupId}/${ctx.member}`, groupId: ctx.groupId, samples, reward, info: info as unknown as Record<string, unknown> };
}

/** The workflow the trainer and the evaluator run. */
export function searchWorkflow(engine: InferenceEngine, tools: SearchTools, cfgIn: SearchAgentConfigInput = {}): RolloutWorkflow<SearchItem> {
  const c = SearchAgentConfigSchema.parse(cfgIn);
  if (c.allowAccess && !tools.access) throw new Error('searchWorkflow: allowAccess is set but no page reader was given (pass tools.access or set allowAccess: false)');
  return (item, ctx) => runSearchEpisode(engine, tools, c, item, ctx);
}
