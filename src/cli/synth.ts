/**
 * `agentrl synth`: the synthetic knowledge base as a search corpus, and multi-hop QAs synthesised over it.
 *
 *   agentrl synth corpus --seed 0 --per-type 20 --out data/kb        → data/kb/corpus.jsonl, data/kb/worlds.json
 *   agentrl synth qa --kb data/kb/worlds.json --world heldout --count 100 --min-hops 2 --max-hops 6 --out data/kb/heldout.jsonl
 *
 * corpus.jsonl is what `agentrl index build` reads ({id, url, title, contents} per line); worlds.json
 * holds the generator options, which regenerate the worlds exactly. A QA line is
 * {id, question, answer, golden_answers, hops, statements, edits, world, source: 'synth'}.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { Rng } from '../core/rng.ts';
import { formatZodError } from '../core/config-errors.ts';
import { generateWorlds, worldDocs, type KbWorld, type WorldsOptions } from '../synth/kb.ts';
import { ChatJsonClient, kbRelatedDoc, llmOperators, ruleOperators, type SynthOperators } from '../synth/operators.ts';
import { llmChecks, ruleChecks, type SynthChecks } from '../synth/checks.ts';
import { seedQa, synthesize } from '../synth/agent.ts';
import { Progress, progressMode } from './progress.ts';
import { int, num } from './option-parsers.ts';

function list(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

export const WorldsFileSchema = z
  .object({
    seed: z.number().int(),
    perType: z.number().int().min(1),
    worlds: z.array(z.string().regex(/^[A-Za-z0-9_-]+$/, 'world names are letters, digits, - and _')).min(1),
    poolSize: z.number().int().min(1).optional(),
  })
  .strict();

function worldsOptions(o: { seed: number; perType: number; worlds: string[]; poolSize?: number }): WorldsOptions {
  const r = WorldsFileSchema.safeParse({ seed: o.seed, perType: o.perType, worlds: o.worlds, ...(o.poolSize !== undefined ? { poolSize: o.poolSize } : {}) });
  if (!r.success) throw new Error(`invalid world options: ${formatZodError(r.error, { schema: WorldsFileSchema })}`);
  if (new Set(r.data.worlds).size !== r.data.worlds.length) throw new Error(`--worlds lists a world twice: ${r.data.worlds.join(',')}`);
  return r.data;
}

export interface CorpusCliOptions {
  seed: number;
  perType: number;
  worlds: string[];
  poolSize?: number;
  out: string;
}

/** Write DIR/corpus.jsonl (every world's documents) and DIR/worlds.json (the generator options). */
export function runSynthCorpus(o: CorpusCliOptions): { docs: number } {
  const opts = worldsOptions(o);
  const worlds = generateWorlds(opts);
  mkdirSync(o.out, { recursive: true });
  const lines = worlds.flatMap((w) => worldDocs(w).map((d) => JSON.stringify({ id: d.id, url: d.url, title: d.title, contents: d.contents })));
  writeFileSync(join(o.out, 'corpus.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(o.out, 'worlds.json'), JSON.stringify(opts, null, 2) + '\n');
  return { docs: lines.length };
}

/** The worlds a worlds.json describes. */
export function loadWorldsFile(path: string): { options: WorldsOptions; worlds: KbWorld[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`--kb ${path}: cannot read it as JSON (${e instanceof Error ? e.message : String(e)}); pass the worlds.json that \`agentrl synth corpus\` wrote`);
  }
  const r = WorldsFileSchema.safeParse(raw);
  if (!r.success) throw new Error(`--kb ${path}: ${formatZodError(r.error, { schema: WorldsFileSchema })}`);
  return { options: r.data, worlds: generateWorlds(r.data) };
}

export interface QaCliOptions {
  seed: number;
  perType: number;
  worlds: string[];
  poolSize?: number;
  /** A worlds.json to take the world options from (instead of seed/perType/worlds/poolSize). */
  kb?: string;
  world: string;
  count: number;
  minHops: number;
  maxHops: number;
  maxSteps: number;
  pInject: number;
  /** Seed of the synthesis (default: the world seed, from --seed or --kb). */
  qaSeed?: number;
  /** Seed QAs tried per output QA before giving up. */
  attempts: number;
  ops: string;
  llmUrl?: string;
  llmModel?: string;
  llmKeyEnv: string;
  out: string;
}

export interface QaLine {
  id: string;
  question: string;
  answer: string;
  golden_answers: string[];
  hops: number;
  statements: string[];
  edits: unknown[];
  world: string;
  source: 'synth';
}

/**
 * Synthesise `count` QAs over one world, target hops cycling through minHops..maxHops; write them as
 * JSONL. `onQa` is called after each QA (progress: QAs done, seed QAs tried so far).
 */
export async function runSynthQa(o: QaCliOptions, onQa?: (done: number, attempts: number) => void): Promise<{ lines: QaLine[] }> {
  const worldOpts = o.kb ? loadWorldsFile(o.kb).options : worldsOptions(o);
  const world = generateWorlds(worldOpts).find((w) => w.name === o.world);
  if (!world) throw new Error(`--world ${o.world}: no such world (the worlds are ${worldOpts.worlds.join(', ')})`);
  if (!(o.count >= 1)) throw new Error(`--count must be ≥ 1 (got ${o.count})`);
  if (!(o.minHops >= 1 && o.minHops <= o.maxHops)) throw new Error(`--min-hops must be ≥ 1 and ≤ --max-hops (got ${o.minHops} and ${o.maxHops})`);
  if (o.maxHops > o.maxSteps + 1) throw new Error(`--max-hops ${o.maxHops} cannot be reached in --max-steps ${o.maxSteps} edits from a 1-hop seed; raise --max-steps to at least ${o.maxHops - 1}`);
  if (!(o.attempts >= 1)) throw new Error(`--attempts must be ≥ 1 (got ${o.attempts})`);
  let operators: SynthOperators;
  let checks: SynthChecks;
  if (o.ops === 'rule') {
    operators = ruleOperators(world);
    checks = ruleChecks(world);
  } else if (o.ops === 'llm') {
    if (!o.llmUrl || !o.llmModel) throw new Error('--ops llm needs --llm-url (an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1) and --llm-model');
    const client = new ChatJsonClient({ baseUrl: o.llmUrl, model: o.llmModel, apiKeyEnv: o.llmKeyEnv });
    operators = llmOperators({ baseUrl: o.llmUrl, model: o.llmModel, client, relatedDoc: kbRelatedDoc(world) });
    checks = llmChecks(client);
  } else {
    throw new Error(`--ops must be 'rule' or 'llm' (got '${o.ops}')`);
  }

  // Salted so the QA stream is not the world generator's stream.
  const rng = new Rng(((o.qaSeed ?? worldOpts.seed) ^ 0x2545f491) >>> 0);
  const lines: QaLine[] = [];
  const span = o.maxHops - o.minHops + 1;
  let tried = 0;
  for (let i = 0; i < o.count; i++) {
    const targetHops = o.minHops + (i % span);
    let line: QaLine | undefined;
    for (let a = 0; a < o.attempts && !line; a++) {
      tried++;
      const seed = seedQa(world, rng, `${world.name}-synth-${i}`);
      const r = await synthesize(seed, { seed: rng.nextU32(), targetHops, maxSteps: o.maxSteps, pInject: o.pInject, operators, checks });
      if (r.status !== 'done') continue;
      line = { id: seed.id, question: r.qa.question, answer: r.qa.answer, golden_answers: [r.qa.answer], hops: r.qa.hops, statements: r.qa.statements, edits: r.edits, world: world.name, source: 'synth' };
    }
    if (!line) throw new Error(`no ${targetHops}-hop QA #${i} after ${o.attempts} seed QAs (world '${world.name}' too small, or --max-steps ${o.maxSteps} / --p-inject ${o.pInject} too low)`);
    lines.push(line);
    onQa?.(lines.length, tried);
  }
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return { lines };
}

export function registerSynth(program: Command): void {
  const synth = program.command('synth').description('The synthetic knowledge base (worlds of entities with typed relations): write it as a search corpus, or synthesise multi-hop QAs over it (ASearcher-style INJECT/FUZZ edits with validity checks).');

  synth
    .command('corpus')
    .description('Write every world\'s documents to DIR/corpus.jsonl ({id, url, title, contents} per line, what `agentrl index build` reads) and the generator options to DIR/worlds.json.')
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'world seed', int, 0)
    .option('--per-type <n>', 'entities per type in each world', int, 20)
    .option('--worlds <list>', 'comma-separated world names', list, ['train', 'heldout'])
    .option('--pool-size <n>', 'words in each first/last-name pool (default: just enough)', int)
    .action((o: CorpusCliOptions) => {
      const { docs } = runSynthCorpus(o);
      console.log(`wrote ${docs} documents to ${join(o.out, 'corpus.jsonl')} and the world options to ${join(o.out, 'worlds.json')}`);
    });

  synth
    .command('qa')
    .description('Synthesise QAs over one world: each starts from a 1-hop question and is edited (INJECT adds a hop, FUZZ blurs a name) until it has its target hops, every edit checked (answer supported by the statements, unique in the world, not named). Target hops cycle through --min-hops..--max-hops. Writes JSONL: {id, question, answer, golden_answers, hops, statements, edits, world, source}.')
    .requiredOption('--out <file>', 'output JSONL file')
    .option('--kb <worlds.json>', 'take the world options from a worlds.json written by `synth corpus` (instead of --seed/--per-type/--worlds)')
    .option('--seed <n>', 'world seed', int, 0)
    .option('--per-type <n>', 'entities per type in each world', int, 20)
    .option('--worlds <list>', 'comma-separated world names', list, ['train', 'heldout'])
    .option('--pool-size <n>', 'words in each first/last-name pool', int)
    .option('--world <name>', 'the world to ask about', 'heldout')
    .option('--count <n>', 'QAs to write', int, 100)
    .option('--min-hops <n>', 'fewest hops', int, 1)
    .option('--max-hops <n>', 'most hops', int, 8)
    .option('--max-steps <n>', 'edit attempts per QA', int, 16)
    .option('--p-inject <p>', 'probability of INJECT (else FUZZ) below the target hops', num, 0.67)
    .option('--qa-seed <n>', 'synthesis seed (default: the world seed)', int)
    .option('--attempts <n>', 'seed QAs to try per output QA before giving up', int, 20)
    .option('--ops <kind>', 'edit operators and checks: rule (exact, offline) or llm', 'rule')
    .option('--llm-url <url>', 'OpenAI-compatible base URL for --ops llm, e.g. http://127.0.0.1:8000/v1')
    .option('--llm-model <name>', 'model name for --ops llm')
    .option('--llm-key-env <var>', 'environment variable holding the bearer key for --ops llm', 'OPENAI_API_KEY')
    .option('--json', 'print JSON lines on stdout (one per QA, a final summary) instead of a progress bar or plain lines')
    .action(async (o: QaCliOptions & { json?: boolean }, cmd: Command) => {
      if (o.kb) {
        const clash = ['seed', 'perType', 'worlds', 'poolSize'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
        if (clash.length > 0) throw new Error(`--kb gives the world options; drop ${clash.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} (use --qa-seed for the synthesis seed)`);
      }
      const progress = new Progress({ label: 'synthesising', unit: 'QAs', total: o.count, mode: progressMode({ json: o.json }), labels: { seedQasTried: 'seed QAs tried' } });
      progress.start(0);
      const { lines } = await runSynthQa(o, (done, tried) => progress.update(done, { seedQasTried: tried })).finally(() => progress.stop());
      const byHops = new Map<number, number>();
      for (const l of lines) byHops.set(l.hops, (byHops.get(l.hops) ?? 0) + 1);
      const hist = [...byHops].sort((a, b) => a[0] - b[0]).map(([h, n]) => `${h} hops: ${n}`).join(', ');
      if (o.json) progress.event({ event: 'summary', out: o.out, world: o.world, qas: lines.length, byHops: Object.fromEntries([...byHops].sort((a, b) => a[0] - b[0])), seconds: progress.timing().elapsedSeconds });
      else console.log(`wrote ${lines.length} QAs over world '${o.world}' to ${o.out} (${hist})`);
    });
}
