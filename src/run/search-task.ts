/**
 * The search agent as an `agentrl train` task: chain questions over a generated knowledge base
 * (src/synth/kb.ts) answered with BM25 search over the KB's documents, a held-out world for
 * evaluation, and an optional SFT warm start from scripted demonstrations.
 *
 *   KB worlds ─▶ corpus.jsonl ─▶ RUN/index.db (BM25) ─▶ search tool
 *   demo world ─▶ scripted demonstrations ─▶ SFT warm start (optional)
 *   train world ─▶ chain questions (hops drawn from trainHops) ─▶ trainer
 *   held-out world ─▶ chain questions per hop count ─▶ evaluation (Avg@k / Pass@k, turn budgets)
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { Rng } from '../core/rng.ts';
import type { Sample } from '../core/types.ts';
import { mixSeed } from '../envs/rng.ts';
import { BuiltinEngine } from '../engine/builtin-engine.ts';
import { Transformer, type ModelConfigInput } from '../engine/model.ts';
import { ScriptedEngine } from '../engine/scripted-engine.ts';
import { preTokenize, WordTokenizer } from '../engine/tokenizer.ts';
import type { Backend } from '../engine/backend.ts';
import type { InferenceEngine, Tokenizer } from '../engine/types.ts';
import { SearchAgentConfigSchema, type SearchAgentConfig, type SearchItem } from '../agents/search/config.ts';
import { kbOraclePolicy } from '../agents/search/kb-oracle.ts';
import { errorInformation, pageInformation, promptText, searchInformation } from '../agents/search/render.ts';
import { searchWorkflow, type SearchTools } from '../agents/search/workflow.ts';
import { Bm25Index, buildIndex } from '../tools/bm25-index.ts';
import { RetrievalClient } from '../tools/retrieval-client.ts';
import { chainQuestion, generateWorlds, kbVocabulary, worldDocs, type KbWorld } from '../synth/kb.ts';
import { BuiltinTrainer, sftLoss } from '../train/builtin-trainer.ts';
import { LoraAdapter, type LoraConfigInput } from '../train/lora.ts';
import { collectRollouts } from '../train/rollout-controller.ts';
import { evaluateSearchItems, type SearchSampleRecord } from '../eval/search-eval.ts';

const Hops = z.array(z.number().int().min(1).max(8)).min(1);

export const SearchTaskSchema = z
  .object({
    /** The generated knowledge base: training, held-out and demonstration worlds sharing only name words. */
    kb: z
      .object({
        seed: z.number().int().min(0).default(0),
        perType: z.number().int().min(4).default(60),
        /** One document per entity, or one passage per fact. */
        docs: z.enum(['entity', 'fact']).default('entity'),
      })
      .strict()
      .default({}),
    /** Search through a running retrieval server instead of the run's own BM25 index. */
    retrievalUrl: z.string().url().optional(),
    agent: SearchAgentConfigSchema.default({}),
    /** Hop counts of training questions (drawn uniformly per question). */
    trainHops: Hops.default([1, 2, 3, 4]),
    /** SFT warm start: `demos` scripted demonstrations on demo-world questions of `hops`, before RL. */
    sft: z
      .object({
        demos: z.number().int().min(0).default(0),
        hops: Hops.default([1, 2]),
        epochs: z.number().int().min(1).default(1),
        batchSize: z.number().int().min(1).default(16),
        /** AdamW settings of the SFT phase (the RL phase starts a fresh optimizer). */
        optimizer: z.record(z.unknown()).default({ lr: 1e-3, weightDecay: 0 }),
      })
      .strict()
      .default({}),
    /** Evaluation on the held-out world: `eval.trials` questions per hop count, k samples each. */
    eval: z
      .object({
        hops: Hops.default([1, 2, 3, 4]),
        k: z.number().int().min(1).default(1),
        /** Also evaluate questions of evalHops ≥ 3 at these maxTurns (accuracy against the turn budget). */
        turnBudgets: z.array(z.number().int().min(1)).default([]),
      })
      .strict()
      .default({}),
  })
  .strict();
export type SearchTask = z.output<typeof SearchTaskSchema>;

/**
 * Three worlds with disjoint entities: RL trains on `train`, evaluation asks about `heldout`, and the
 * SFT demonstrations come from `demo` — so the warm-started policy has memorised none of the facts
 * RL then asks about, and only finding them in the search results can earn reward.
 */
export interface SearchWorld {
  train: KbWorld;
  heldout: KbWorld;
  demo: KbWorld;
}

export function searchWorlds(t: SearchTask): SearchWorld {
  const [train, heldout, demo] = generateWorlds({ seed: t.kb.seed, perType: t.kb.perType, worlds: ['train', 'heldout', 'demo'] });
  return { train: train!, heldout: heldout!, demo: demo! };
}

/** Every word the agent's texts use: KB words and the fixed words of prompts and tool replies. */
export function searchTokenizer(worlds: SearchWorld, agent: SearchAgentConfig): WordTokenizer {
  const fixed = [
    promptText('what is the x of y ?', agent),
    searchInformation([], agent),
    searchInformation([{ url: '', title: '', contents: '', score: null }], agent),
    pageInformation('', 1, 1),
    errorInformation('The search failed: The page could not be read. Invalid turn (no tool call or answer). Write one or'),
    '<access> </access> unknown',
    // Document and page numbers.
    ...Array.from({ length: 64 }, (_, i) => String(i + 1)),
  ];
  return WordTokenizer.fromVocabulary([...kbVocabulary([worlds.train, worlds.heldout, worlds.demo]), ...fixed.flatMap(preTokenize)], { specials: ['<access>', '</access>'] });
}

/** Training item i: a chain question of the training world (a pure function of seed and i). */
export function trainQuestion(world: KbWorld, seed: number, hops: readonly number[], i: number): SearchItem {
  const rng = new Rng(mixSeed(seed, i));
  const h = hops[rng.int(hops.length)]!;
  const q = chainQuestion(world, rng, h, `train-${i}`);
  return { id: q.id, question: q.question, golds: [q.answer], hops: q.hops, benchmark: 'kb-train' };
}

export function* trainQuestions(world: KbWorld, seed: number, hops: readonly number[], start = 0): Generator<SearchItem> {
  for (let i = start; ; i++) yield trainQuestion(world, seed, hops, i);
}

/** `n` held-out questions of each hop count. */
export function heldoutQuestions(world: KbWorld, seed: number, hops: readonly number[], n: number): SearchItem[] {
  return hops.flatMap((h) => {
    const rng = new Rng(mixSeed(seed, 0x4e1d + h));
    return Array.from({ length: n }, (_, i) => {
      const q = chainQuestion(world, rng, h, `heldout-h${h}-${i}`);
      return { id: q.id, question: q.question, golds: [q.answer], hops: h, benchmark: 'kb-heldout' };
    });
  });
}

/** The search tool: the run's BM25 index over both worlds' documents (built once), or a retrieval server. */
export async function searchTools(t: SearchTask, worlds: SearchWorld, outDir: string): Promise<SearchTools & { close(): void }> {
  if (t.retrievalUrl) {
    const client = new RetrievalClient(t.retrievalUrl);
    return { search: client, access: client, close: () => undefined };
  }
  const db = join(outDir, `index-${t.kb.docs}.db`);
  if (!existsSync(db)) {
    mkdirSync(outDir, { recursive: true });
    const corpus = join(outDir, 'corpus.jsonl');
    writeFileSync(corpus, [worlds.train, worlds.heldout, worlds.demo].flatMap((w) => worldDocs(w, t.kb.docs)).map((d) => JSON.stringify(d)).join('\n') + '\n');
    await buildIndex(corpus, db);
  }
  const index = new Bm25Index(db);
  return { search: index, access: index, close: () => index.close() };
}

/**
 * SFT warm start: scripted demonstrations (demo world) through the same workflow, then `epochs` of
 * NLL on their model tokens. Any tokenizer: the demonstrations are the oracle's text encoded by it
 * (a pretrained model's BPE included). With `lora` only an adapter is trained (returned as
 * `adapter`, its A/B parameters; `model` then holds the merged weights).
 */
export async function sftWarmStart(
  t: SearchTask, worlds: SearchWorld, tools: SearchTools, tokenizer: Tokenizer, model: Transformer, seed: number, opts: { lora?: LoraConfigInput } = {},
): Promise<{ demos: number; steps: number; losses: number[]; demoF1: number; tokens: number; adapter?: Float32Array }> {
  const s = t.sft;
  const oracle = new ScriptedEngine(tokenizer, kbOraclePolicy, model.config.contextLength);
  const items = Array.from({ length: s.demos }, (_, i) => trainQuestion(worlds.demo, mixSeed(seed, 0x5f7), s.hops, i));
  const demos = await collectRollouts(items, searchWorkflow(oracle, tools, t.agent), { maxConcurrent: 64 });
  const samples: Sample[] = demos.flatMap((d) => d.samples);
  const demoF1 = demos.reduce((a, d) => a + (d.info.f1 as number), 0) / Math.max(1, demos.length);
  const lora = opts.lora ? new LoraAdapter(model, opts.lora) : undefined;
  const trainer = new BuiltinTrainer(model, s.optimizer as never, lora ? { lora } : {});
  const rng = new Rng(mixSeed(seed, 0x5f8));
  const losses: number[] = [];
  let tokens = 0;
  for (let e = 0; e < s.epochs; e++) {
    const order = samples.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let b = 0; b < order.length; b += s.batchSize) {
      const batch = order.slice(b, b + s.batchSize).map((i) => samples[i]!);
      const m = trainer.trainStep(batch, sftLoss);
      losses.push(m.loss);
      tokens += m.tokens;
    }
  }
  return { demos: demos.length, steps: losses.length, losses, demoF1, tokens, ...(lora ? { adapter: Float32Array.from(lora.params) } : {}) };
}

export interface SearchEvalSection {
  label: string;
  records: SearchSampleRecord[];
  /** maxTurns → records of the ≥ 3-hop questions at that budget. */
  turnBudgets: { maxTurns: number; records: SearchSampleRecord[] }[];
}

/** Evaluate a policy on the held-out world (and, when configured, at several turn budgets). */
export async function evaluateSearchPolicy(label: string, engine: InferenceEngine, tools: SearchTools, t: SearchTask, items: SearchItem[]): Promise<SearchEvalSection> {
  const records = await evaluateSearchItems(searchWorkflow(engine, tools, t.agent), items, t.eval.k);
  const deep = items.filter((i) => (i.hops ?? 0) >= 3);
  const turnBudgets: SearchEvalSection['turnBudgets'] = [];
  for (const maxTurns of t.eval.turnBudgets) {
    turnBudgets.push({ maxTurns, records: await evaluateSearchItems(searchWorkflow(engine, tools, { ...t.agent, maxTurns }), deep, t.eval.k) });
  }
  return { label, records, turnBudgets };
}

/** The built-in engine and trainer for a search run. */
export function searchModel(model: Omit<ModelConfigInput, 'vocabSize'>, tokenizer: WordTokenizer, backend: Backend, seed: number, maxBatch: number): { trainer: BuiltinTrainer; engine: BuiltinEngine; modelConfig: ModelConfigInput } {
  const cfg = { ...model, vocabSize: tokenizer.vocabSize };
  const policy = new Transformer(cfg, backend, seed);
  return { trainer: new BuiltinTrainer(policy, {}), engine: new BuiltinEngine(new Transformer(cfg, backend, seed), tokenizer, { maxBatch, seed: seed + 1 }), modelConfig: cfg };
}
