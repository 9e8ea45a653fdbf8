/**
 * A persistent BM25 index over a JSONL corpus, kept in SQLite FTS5: the search agent's local search
 * tool (Lucene-style BM25 as in ASearcher's optional sparse retriever) and its page reader.
 *
 * Corpus: one JSON object per line, `{id, url?, title?, contents}` (`text` is accepted for `contents`;
 * a missing url becomes `corpus://<id>`, a missing title ''). The database holds a `docs` table and an
 * FTS5 external-content table `docs_fts` over (title, contents), default unicode61 tokenizer, so a
 * passage's text is stored once. Scores are −bm25() (k1 = 1.2, b = 0.75, term frequencies summed over
 * both columns): higher is better.
 */
import Database from 'better-sqlite3';
import { createReadStream, existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ToolError, type PageReader, type SearchBackend, type SearchHit, type ToolDoc } from './types.ts';

/** Bumped when the schema changes, so an old index is refused with a clear message. */
const INDEX_FORMAT = 1;
/** Query terms kept (the first distinct ones): bounds the work one model-written query can cause. */
export const MAX_QUERY_TERMS = 32;

export interface CorpusDoc {
  id: string;
  url: string;
  title: string;
  contents: string;
}

/** One corpus line as a document; throws an Error naming the file and line for anything malformed. */
export function parseCorpusLine(line: string, lineNo: number, source: string): CorpusDoc {
  const where = `${source} line ${lineNo}`;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${where}: expected a JSON object {id, title, contents}`);
  const o = v as Record<string, unknown>;
  const id = typeof o.id === 'number' && Number.isFinite(o.id) ? String(o.id) : o.id;
  if (typeof id !== 'string' || id === '') throw new Error(`${where}: missing 'id' (a non-empty string or a number)`);
  const contents = o.contents ?? o.text;
  if (typeof contents !== 'string') throw new Error(`${where}: missing 'contents' (or 'text'), a string, for id '${id}'`);
  if (o.title !== undefined && typeof o.title !== 'string') throw new Error(`${where}: 'title' must be a string (id '${id}')`);
  if (o.url !== undefined && (typeof o.url !== 'string' || o.url === '')) throw new Error(`${where}: 'url' must be a non-empty string (id '${id}')`);
  return { id, url: (o.url as string | undefined) ?? `corpus://${id}`, title: (o.title as string | undefined) ?? '', contents };
}

export interface BuildIndexOptions {
  /** Documents per transaction (default 10,000). */
  batchSize?: number;
  /** Called after every batch (and once at the end). */
  onProgress?: (bytesRead: number, totalBytes: number, docs: number) => void;
}

export interface BuildIndexResult {
  docs: number;
  seconds: number;
  dbBytes: number;
}

const SCHEMA = `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, url TEXT NOT NULL UNIQUE, title TEXT NOT NULL, contents TEXT NOT NULL);
  CREATE VIRTUAL TABLE docs_fts USING fts5(title, contents, content='docs', content_rowid='rowid');
`;

/**
 * Stream `corpusPath` into a new index at `dbPath`. The index is built beside it (`<dbPath>.building`)
 * and renamed into place only when complete, so a failed build leaves no half-written index behind
 * (and an existing index at `dbPath` is replaced only by a complete one).
 */
export async function buildIndex(corpusPath: string, dbPath: string, opts: BuildIndexOptions = {}): Promise<BuildIndexResult> {
  const batchSize = opts.batchSize ?? 10_000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer (got ${batchSize})`);
  if (!existsSync(corpusPath)) throw new Error(`corpus ${corpusPath} not found`);
  const totalBytes = statSync(corpusPath).size;
  const started = performance.now();
  const tmp = `${dbPath}.building`;
  rmSync(tmp, { force: true });
  const db = new Database(tmp);
  try {
    // A build is all-or-nothing (see above), so no journal and no fsyncs; a large page cache and a
    // large FTS5 in-memory hash mean fewer, bigger segments to merge.
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('cache_size = -262144');
    db.exec(SCHEMA);
    db.exec(`INSERT INTO docs_fts(docs_fts, rank) VALUES ('hashsize', ${64 * 1024 * 1024})`); // (FTS5 refuses a bound value here)
    const insertDoc = db.prepare('INSERT INTO docs (id, url, title, contents) VALUES (?, ?, ?, ?)');
    const insertFts = db.prepare('INSERT INTO docs_fts (rowid, title, contents) VALUES (?, ?, ?)');
    const idTaken = db.prepare('SELECT 1 FROM docs WHERE id = ?');
    const insertBatch = db.transaction((batch: { doc: CorpusDoc; line: number }[]) => {
      for (const { doc, line } of batch) {
        let rowid: number | bigint;
        try {
          rowid = insertDoc.run(doc.id, doc.url, doc.title, doc.contents).lastInsertRowid;
        } catch (e) {
          if ((e as { code?: string }).code !== 'SQLITE_CONSTRAINT_UNIQUE') throw e;
          if (idTaken.get(doc.id)) throw new Error(`${corpusPath} line ${line}: duplicate id '${doc.id}'`);
          throw new Error(`${corpusPath} line ${line}: duplicate url '${doc.url}' (id '${doc.id}')`);
        }
        insertFts.run(rowid, doc.title, doc.contents);
      }
    });

    const input = createReadStream(corpusPath, { highWaterMark: 1 << 20 });
    const lines = createInterface({ input, crlfDelay: Infinity });
    let batch: { doc: CorpusDoc; line: number }[] = [];
    let lineNo = 0;
    let docs = 0;
    const flush = () => {
      insertBatch(batch);
      docs += batch.length;
      batch = [];
      opts.onProgress?.(input.bytesRead, totalBytes, docs);
    };
    try {
      for await (const line of lines) {
        lineNo++;
        if (line.trim() === '') continue;
        const text = lineNo === 1 && line.charCodeAt(0) === 0xfeff ? line.slice(1) : line; // a UTF-8 byte-order mark
        batch.push({ doc: parseCorpusLine(text, lineNo, corpusPath), line: lineNo });
        if (batch.length >= batchSize) flush();
      }
    } finally {
      lines.close();
      input.destroy();
    }
    if (batch.length > 0) flush();
    if (docs === 0) throw new Error(`${corpusPath} holds no documents`);

    db.exec(`INSERT INTO docs_fts(docs_fts) VALUES ('optimize')`);
    const setMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    setMeta.run('format', String(INDEX_FORMAT));
    setMeta.run('docs', String(docs));
    setMeta.run('corpus', corpusPath);
    db.close();
    renameSync(tmp, dbPath);
    return { docs, seconds: (performance.now() - started) / 1000, dbBytes: statSync(dbPath).size };
  } catch (e) {
    if (db.open) db.close();
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Word tokens of a query (runs of Unicode letters, digits and marks), lower-cased, distinct, at most
 * `maxTerms`. Each becomes one quoted FTS5 string, OR-ed with the others (any word may match, as in
 * Lucene's BM25 bag-of-words query); as they hold no quotes or punctuation, FTS5 syntax in a query
 * (`"`, `-`, `*`, `:`, parentheses, NEAR, AND/OR/NOT, `^`, `+`) is never interpreted.
 */
export function queryTerms(query: string, maxTerms = MAX_QUERY_TERMS): string[] {
  const terms: string[] = [];
  const seen = new Set<string>();
  for (const m of query.matchAll(/[\p{L}\p{N}\p{M}\p{Co}]+/gu)) {
    const t = m[0].toLowerCase();
    if (seen.has(t)) continue;
    seen.add(t);
    terms.push(t);
    if (terms.length >= maxTerms) break;
  }
  return terms;
}

/** FTS5's idf (fts5_aux.c): log((N − n + 0.5) / (n + 0.5)) for a word in n of N passages, floored at 1e-6. */
export function fts5Idf(n: number, N: number): number {
  const idf = Math.log((N - n + 0.5) / (n + 0.5));
  return idf <= 0 ? 1e-6 : idf;
}

/** FTS5's bm25 k1: a word's share of a score is below idf·(k1 + 1) whatever its frequency. */
const K1 = 1.2;

function orQuery(terms: readonly string[]): string {
  return terms.map((t) => `"${t}"`).join(' OR ');
}

interface DocRow {
  id: string;
  url: string;
  title: string;
  contents: string;
}

interface Ranked {
  rowid: number;
  score: number;
}

export interface Bm25IndexOptions {
  /**
   * Words in more passages than this are "common" (see `rankedRowids`); default max(1000, N/100).
   * Only speed depends on it, not the hits.
   */
  commonDf?: number;
}

/** A built index, opened read-only: BM25 search and access to passages by url or id. */
export class Bm25Index implements SearchBackend, PageReader {
  readonly name = 'bm25';
  private readonly db: Database.Database;
  private readonly rankStmt: Database.Statement<[string, number], Ranked>;
  private readonly dfStmt: Database.Statement<[string], number>;
  private readonly byRowid: Database.Statement<[number], DocRow>;
  private readonly byUrl: Database.Statement<[string], DocRow>;
  private readonly byId: Database.Statement<[string], DocRow>;
  private readonly docCount: number;
  private readonly commonDf: number;

  constructor(readonly dbPath: string, opts: Bm25IndexOptions = {}) {
    if (!existsSync(dbPath)) throw new Error(`BM25 index ${dbPath} not found; build it with: agentrl index build <corpus.jsonl> --out ${dbPath}`);
    this.db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      const tables = this.db.prepare(`SELECT name FROM sqlite_master WHERE name IN ('meta', 'docs', 'docs_fts')`).pluck().all();
      if (tables.length !== 3) throw new Error(`${dbPath} is not an agentrl BM25 index (it lacks the meta/docs/docs_fts tables); build one with agentrl index build`);
      const meta = new Map(this.db.prepare('SELECT key, value FROM meta').raw().all() as [string, string][]);
      if (meta.get('format') !== String(INDEX_FORMAT)) throw new Error(`${dbPath} is a BM25 index of format ${meta.get('format')}, this agentrl reads format ${INDEX_FORMAT}; rebuild it with agentrl index build`);
      this.docCount = Number(meta.get('docs'));
      this.commonDf = opts.commonDf ?? Math.max(1000, this.docCount / 100);
      // Document frequencies, for the pruning in rankedRowids (a temp table: the index stays read-only).
      this.db.exec(`CREATE VIRTUAL TABLE temp.docs_vocab USING fts5vocab(main, docs_fts, row)`);
      this.dfStmt = this.db.prepare('SELECT doc FROM temp.docs_vocab WHERE term = ?').pluck() as Database.Statement<[string], number>;
      this.rankStmt = this.db.prepare('SELECT rowid, -rank AS score FROM docs_fts WHERE docs_fts MATCH ? ORDER BY rank LIMIT ?');
      this.byRowid = this.db.prepare('SELECT id, url, title, contents FROM docs WHERE rowid = ?');
      this.byUrl = this.db.prepare('SELECT id, url, title, contents FROM docs WHERE url = ?');
      this.byId = this.db.prepare('SELECT id, url, title, contents FROM docs WHERE id = ?');
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  /** Top-k passages for free text, best first; [] when the query has no words or nothing matches. */
  searchSync(query: string, topK: number): SearchHit[] {
    const k = Math.floor(topK);
    if (!(k >= 1)) return [];
    const terms = queryTerms(query);
    if (terms.length === 0) return [];
    return this.rankedRowids(terms, k).map(({ rowid, score }) => ({ ...this.byRowid.get(rowid)!, score }));
  }

  /**
   * The k best passages for the OR of `terms`, as FTS5 ranks them, without scoring every passage that
   * holds a common word. FTS5 scores each matching passage (≈1.5 µs each), so a plain OR query
   * with "the" in it would score nearly the whole corpus. Instead, MaxScore-style:
   *
   * - Words in at least half the passages are left out: FTS5 floors their idf at 1e-6, so each adds
   *   under 2.2·10⁻⁶ to a score. They are used only when the other words match fewer than k passages.
   * - The rest are split into rare words R and common words C (in more than `commonDf` passages).
   *   The k best passages holding some word of R are found exactly by two cheap queries driven by
   *   the rare words: `(R) AND (C)` scores the ones that also hold a common word in full, `R` alone
   *   the others (a passage in the second list but not the first that does hold a common word
   *   scores below every passage of the first, which then has k passages, so it never makes the cut).
   * - A passage holding only common words scores below Σ_C idf·(k1+1). If the k-th best found
   *   scores above that, these are the k best overall; else the rarest common word moves to R and
   *   the search repeats (at worst it ends as the plain query).
   *
   * Words that are not plain ASCII letters/digits always count as rare: their document frequency is
   * looked up only where the tokenizer surely keeps the word as it is.
   */
  private rankedRowids(terms: string[], k: number): Ranked[] {
    const exact = () => this.rankStmt.all(orQuery(terms), k);
    const n = this.docCount;
    const rare: string[] = [];
    const common: { term: string; df: number }[] = [];
    let veryCommon = 0;
    for (const term of terms) {
      if (!/^[a-z0-9]+$/.test(term)) {
        rare.push(term);
        continue;
      }
      const df = this.dfStmt.get(term) ?? 0;
      if (df === 0) continue; // in no passage: matches nothing, adds nothing
      if (df >= n / 2) veryCommon++;
      else if (df <= this.commonDf) rare.push(term);
      else common.push({ term, df });
    }
    if (rare.length + common.length === 0) return veryCommon > 0 ? exact() : [];
    if (common.length === 0 && veryCommon === 0) return exact();
    common.sort((a, b) => a.df - b.df);
    if (rare.length === 0) rare.push(common.shift()!.term);
    for (;;) {
      const bound = common.reduce((s, c) => s + fts5Idf(c.df, n) * (K1 + 1), 0);
      const both = common.length > 0 ? this.rankStmt.all(`(${orQuery(rare)}) AND (${orQuery(common.map((c) => c.term))})`, k) : [];
      const seen = new Set(both.map((h) => h.rowid));
      const hits = [...both, ...this.rankStmt.all(orQuery(rare), k).filter((h) => !seen.has(h.rowid))].sort((a, b) => b.score - a.score).slice(0, k);
      if (hits.length === k && hits[k - 1]!.score > bound) return hits;
      if (common.length === 0) return hits.length < k && veryCommon > 0 ? exact() : hits;
      rare.push(common.shift()!.term);
    }
  }

  /** The passage with this url, else the one with this id; null when there is none. */
  accessSync(urlOrId: string): ToolDoc | null {
    const r = this.byUrl.get(urlOrId) ?? this.byId.get(urlOrId);
    return r ? { id: r.id, url: r.url, title: r.title, contents: r.contents } : null;
  }

  async search(query: string, topK: number, signal?: AbortSignal): Promise<SearchHit[]> {
    signal?.throwIfAborted();
    return this.guard(() => this.searchSync(query, topK));
  }

  async access(url: string, signal?: AbortSignal): Promise<ToolDoc | null> {
    signal?.throwIfAborted();
    return this.guard(() => this.accessSync(url));
  }

  /**
   * Passages holding `word` (as the tokenizer folds it: lower-case; looked up as given, so for words
   * of plain ASCII letters/digits this is exact).
   */
  documentFrequency(word: string): number {
    return this.dfStmt.get(word.toLowerCase()) ?? 0;
  }

  /** Number of passages. */
  count(): number {
    return this.docCount;
  }

  close(): void {
    this.db.close();
  }

  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw new ToolError(`bm25 (${this.dbPath}): ${e instanceof Error ? e.message : String(e)}`, this.name, 1, { cause: e });
    }
  }
}
