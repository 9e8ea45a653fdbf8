/**
 * `agentrl eval search`: evaluate a search agent checkpoint on a QA data set (JSONL: `question` with
 * `golden_answers` or `answer`), k samples per question: Avg@k and Pass@k for EM, F1 and, with
 * --judge-url, an LLM judge, per benchmark and per hop count; writes eval-search.json and .md.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { SearchAgentConfigSchema } from '../agents/search/config.ts';
import { searchWorkflow, type SearchTools } from '../agents/search/workflow.ts';
import { SearchTaskSchema } from '../run/search-task.ts';
import { loadQaFile } from '../eval/search-data.ts';
import { evaluateSearchItems, toMetricRecord, type SearchSampleRecord } from '../eval/search-eval.ts';
import { aggregateSearchMetrics, renderSearchMetricsMarkdown } from '../eval/search-metrics.ts';
import { Bm25Index } from '../tools/bm25-index.ts';
import { RetrievalClient } from '../tools/retrieval-client.ts';
import { LlmJudge } from '../rewards/judge.ts';
import { loadCheckpointPolicy } from './checkpoint-policy.ts';

export interface EvalSearchOptions {
  checkpoint: string;
  data: string;
  k: number;
  index?: string;
  retrievalUrl?: string;
  maxTurns?: number;
  limit?: number;
  seed: number;
  judgeUrl?: string;
  judgeModel?: string;
  out?: string;
}

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected an integer ≥ 1, got '${v}'`);
  return n;
}

function tools(o: EvalSearchOptions, runIndex: string): SearchTools & { close(): void } {
  if (o.retrievalUrl) {
    const c = new RetrievalClient(o.retrievalUrl);
    return { search: c, access: c, close: () => undefined };
  }
  const path = o.index ?? runIndex;
  if (!existsSync(path)) throw new Error(`no search index: ${path} does not exist; pass --index index.db (built by agentrl index build) or --retrieval-url URL`);
  const idx = new Bm25Index(path);
  return { search: idx, access: idx, close: () => idx.close() };
}

/** Ask the judge about every sample (8 at a time); a sample without an answer is judged incorrect without a call. */
async function judgeAll(records: SearchSampleRecord[], questions: Map<string, { question: string; golds: string[] }>, judge: LlmJudge): Promise<void> {
  let next = 0;
  const work = async () => {
    while (next < records.length) {
      const r = records[next++]!;
      const q = questions.get(r.questionId)!;
      r.judge = r.prediction === null ? false : (await judge.judge({ question: q.question, prediction: r.prediction, golds: q.golds })).correct;
    }
  };
  await Promise.all(Array.from({ length: 8 }, work));
}

export async function runEvalSearch(o: EvalSearchOptions): Promise<void> {
  const { run, engine } = await loadCheckpointPolicy(o.checkpoint, {
    whyTokenizer: 'a search agent needs one', maxBatch: 64, seed: o.seed,
    checkTask: (r) => (r.task === 'search' ? null : `agentrl eval search evaluates search agents; checkpoint ${o.checkpoint} is a '${r.task}' run (use agentrl eval)`),
  });
  const task = run.search ?? SearchTaskSchema.parse({});
  const agent = SearchAgentConfigSchema.parse({ ...task.agent, ...(o.maxTurns !== undefined ? { maxTurns: o.maxTurns } : {}) });
  if ((o.judgeUrl === undefined) !== (o.judgeModel === undefined)) throw new Error('--judge-url and --judge-model go together');
  let items = loadQaFile(o.data);
  if (o.limit !== undefined) items = items.slice(0, o.limit);
  const t = tools(o, join(dirname(o.checkpoint), `index-${task.kb.docs}.db`));
  try {
    const records = await evaluateSearchItems(searchWorkflow(engine, t, agent), items, o.k);
    if (o.judgeUrl) await judgeAll(records, new Map(items.map((i) => [i.id, i])), new LlmJudge({ baseUrl: o.judgeUrl, model: o.judgeModel! }));
    const metrics = aggregateSearchMetrics(records.map(toMetricRecord));
    const md = renderSearchMetricsMarkdown(metrics);
    const out = o.out ?? dirname(o.checkpoint);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'eval-search.json'), JSON.stringify({ checkpoint: o.checkpoint, data: o.data, k: o.k, agent, metrics, records }, null, 2) + '\n');
    writeFileSync(join(out, 'eval-search.md'), `# Search evaluation of ${o.checkpoint}\n\nData ${basename(o.data)}, ${items.length} questions, k = ${o.k}, maxTurns ${agent.maxTurns}.\n\n${md}\n`);
    console.log(md);
    console.log(`wrote ${join(out, 'eval-search.json')} and eval-search.md`);
  } finally {
    t.close();
  }
}

export function registerEvalSearch(evalCommand: Command): void {
  evalCommand
    .command('search')
    .description('Evaluate a search-agent checkpoint on a QA JSONL file (question + golden_answers/answer): Avg@k and Pass@k for EM, F1 (and an LLM judge), per benchmark and hop count.')
    .requiredOption('--checkpoint <dir>', 'checkpoint directory of an agentrl train search run')
    .requiredOption('--data <file>', 'QA data, JSONL')
    .option('--k <n>', 'samples per question', int, 4)
    .option('--index <db>', 'BM25 index (default: the run\'s own index beside the checkpoint)')
    .option('--retrieval-url <url>', 'search through a retrieval server instead')
    .option('--max-turns <n>', 'turn budget (default: as trained)', int)
    .option('--limit <n>', 'only the first n questions', int)
    .option('--seed <n>', 'sampling seed', (v) => Number(v), 0)
    .option('--judge-url <url>', 'OpenAI-compatible API root for an LLM judge (key from OPENAI_API_KEY)')
    .option('--judge-model <name>', 'judge model name')
    .option('--out <dir>', 'output directory (default: the checkpoint\'s parent)')
    .action(async (o: EvalSearchOptions) => {
      await runEvalSearch(o);
    });
}
