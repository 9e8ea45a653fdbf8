/**
 * A synthetic knowledge base: entities with typed, functional relations, rendered as one document per
 * entity. It gives multi-hop questions of controllable depth whose answers must be looked up (a world
 * is random, so nothing about it can be known without reading its documents), and a held-out world
 * whose entities no training question mentions.
 *
 * Entity names are two words, "first last", from generated pools. Each full name belongs to one world
 * only, and every name word is used in every world when a world has at least twice as many entities
 * as a pool has words (as with the default pool size from perType ≥ 4): a model trained on one world
 * has then seen every word of the other's names, never the entities or their facts.
 *
 * A fact reads "the <relation> of <subject> is <object> ." and a chain question reads
 * "what is the r_k of the r_{k-1} of … the r_1 of <start> ?" (the first hop is the innermost).
 */
import { Rng } from '../core/rng.ts';

export const ENTITY_TYPES = ['person', 'company', 'city', 'university'] as const;
export type EntityType = (typeof ENTITY_TYPES)[number];

export interface Relation {
  /** A single word, used in facts and questions alike. */
  name: string;
  from: EntityType;
  to: EntityType;
}

/** Every entity of type `from` has exactly one object for each of its relations. */
export const RELATIONS: readonly Relation[] = [
  { name: 'employer', from: 'person', to: 'company' },
  { name: 'birthplace', from: 'person', to: 'city' },
  { name: 'mentor', from: 'person', to: 'person' },
  { name: 'school', from: 'person', to: 'university' },
  { name: 'founder', from: 'company', to: 'person' },
  { name: 'headquarters', from: 'company', to: 'city' },
  { name: 'mayor', from: 'city', to: 'person' },
  { name: 'twin', from: 'city', to: 'city' },
  { name: 'president', from: 'university', to: 'person' },
  { name: 'location', from: 'university', to: 'city' },
];

export interface KbFact {
  relation: string;
  /** Entity id of the object. */
  object: string;
}

export interface KbEntity {
  /** Unique across worlds: `<world>-<n>`. */
  id: string;
  name: string;
  type: EntityType;
  facts: KbFact[];
}

export interface KbWorld {
  name: string;
  entities: KbEntity[];
  byId: Map<string, KbEntity>;
}

/** A corpus passage (the JSONL shape `agentrl index build` reads). */
export interface KbDoc {
  id: string;
  url: string;
  title: string;
  contents: string;
}

export interface ChainQuestion {
  id: string;
  question: string;
  answer: string;
  hops: number;
  /** Entity ids along the chain, start first, answer last (hops + 1 of them). */
  path: string[];
  /** Relation names, first hop first. */
  relations: string[];
  /** The facts that support the answer, first hop first. */
  statements: string[];
  world: string;
}

const CONSONANTS = 'bdfgklmnprstvz';
const VOWELS = 'aeiou';

/** `n` distinct pronounceable words of `syllables` CV syllables (deterministic in seed). */
export function nameWords(n: number, seed: number, syllables = 2): string[] {
  const rng = new Rng(seed);
  const out = new Set<string>();
  const reserved = new Set(RELATIONS.map((r) => r.name));
  const max = (CONSONANTS.length * VOWELS.length) ** syllables;
  if (n > max / 2) throw new Error(`nameWords: ${n} words of ${syllables} syllables is too many (at most ${Math.floor(max / 2)})`);
  while (out.size < n) {
    let w = '';
    for (let s = 0; s < syllables; s++) w += CONSONANTS[rng.int(CONSONANTS.length)]! + VOWELS[rng.int(VOWELS.length)]!;
    if (!reserved.has(w)) out.add(w);
  }
  return [...out];
}

function shuffle<T>(xs: T[], rng: Rng): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export interface WorldsOptions {
  seed: number;
  /** Entities per type in each world. */
  perType: number;
  /** World names, e.g. ['train', 'heldout']. */
  worlds: readonly string[];
  /** Words in each of the first- and last-name pools (default: enough for every world). */
  poolSize?: number;
}

/**
 * Generate worlds that share the name-word pools but no full name. Within a world every relation's
 * object is drawn uniformly among the entities of its type (never the subject itself).
 */
export function generateWorlds(opts: WorldsOptions): KbWorld[] {
  const rng = new Rng(opts.seed);
  const needed = opts.perType * ENTITY_TYPES.length * opts.worlds.length;
  const pool = opts.poolSize ?? Math.max(8, Math.ceil(Math.sqrt(needed * 2)));
  if (pool * pool < needed || pool < opts.worlds.length) throw new Error(`generateWorlds: a pool of ${pool} words gives ${pool * pool} names, fewer than the ${needed} entities (or fewer words than worlds)`);
  const words = nameWords(2 * pool, opts.seed ^ 0x5bd1e995);
  const firsts = words.slice(0, pool);
  const lasts = words.slice(pool);
  const perWorld = opts.perType * ENTITY_TYPES.length;
  const W = opts.worlds.length;
  return opts.worlds.map((worldName, w) => {
    // World w draws from the names (i, j) with (i + j) mod W = w, so no full name is in two worlds;
    // it first takes names that bring in a name word it lacks, so every word appears in every world
    // whenever the world has enough entities (2 × pool); then random others.
    const own: [number, number][] = [];
    for (let i = 0; i < pool; i++) for (let j = 0; j < pool; j++) if ((i + j) % W === w) own.push([i, j]);
    shuffle(own, rng);
    const hasFirst = new Set<number>(), hasLast = new Set<number>();
    const chosen: [number, number][] = [], rest: [number, number][] = [];
    for (const [i, j] of own) {
      if (chosen.length < perWorld && (!hasFirst.has(i) || !hasLast.has(j))) {
        chosen.push([i, j]);
        hasFirst.add(i);
        hasLast.add(j);
      } else rest.push([i, j]);
    }
    for (const n of rest) if (chosen.length < perWorld) chosen.push(n);
    if (chosen.length < perWorld) throw new Error(`generateWorlds: world '${worldName}' needs ${perWorld} names but the pool of ${pool} words gives it ${chosen.length}; raise poolSize`);
    shuffle(chosen, rng);
    const names = chosen.map(([i, j]) => `${firsts[i]} ${lasts[j]}`);
    const entities: KbEntity[] = names.map((name, i) => ({ id: `${worldName}-${i}`, name, type: ENTITY_TYPES[Math.floor(i / opts.perType)]!, facts: [] }));
    const ofType = new Map(ENTITY_TYPES.map((t) => [t, entities.filter((e) => e.type === t)] as const));
    for (const e of entities) {
      for (const r of RELATIONS) {
        if (r.from !== e.type) continue;
        const candidates = ofType.get(r.to)!;
        let o = candidates[rng.int(candidates.length)]!;
        while (o === e && candidates.length > 1) o = candidates[rng.int(candidates.length)]!;
        e.facts.push({ relation: r.name, object: o.id });
      }
    }
    return { name: worldName, entities, byId: new Map(entities.map((e) => [e.id, e])) };
  });
}

/** The sentence stating one fact. */
export function factSentence(world: KbWorld, subject: KbEntity, fact: KbFact): string {
  return `the ${fact.relation} of ${subject.name} is ${world.byId.get(fact.object)!.name} .`;
}

/**
 * The world as documents: one per entity (its name, its type, then its facts) or, with granularity
 * 'fact', one passage per fact (as a passage corpus such as Wikipedia-DPR splits articles).
 */
export function worldDocs(world: KbWorld, granularity: 'entity' | 'fact' = 'entity'): KbDoc[] {
  if (granularity === 'fact') {
    return world.entities.flatMap((e) => e.facts.map((f) => ({
      id: `${e.id}-${f.relation}`, url: `kb://${world.name}/${e.id}#${f.relation}`, title: e.name, contents: factSentence(world, e, f),
    })));
  }
  return world.entities.map((e) => ({
    id: e.id,
    url: `kb://${world.name}/${e.id}`,
    title: e.name,
    contents: [`${e.name} is a ${e.type} .`, ...e.facts.map((f) => factSentence(world, e, f))].join(' '),
  }));
}

/** The object of `relation` for entity `e`. */
export function follow(world: KbWorld, e: KbEntity, relation: string): KbEntity {
  const f = e.facts.find((x) => x.relation === relation);
  if (!f) throw new Error(`follow: a ${e.type} has no '${relation}'`);
  return world.byId.get(f.object)!;
}

/** The question text for a relation chain from a start name. */
export function chainQuestionText(startName: string, relations: readonly string[]): string {
  let phrase = startName;
  for (const r of relations) phrase = `the ${r} of ${phrase}`;
  return `what is ${phrase} ?`;
}

/**
 * A random `hops`-hop chain question: a uniformly chosen start entity and, at each hop, a uniformly
 * chosen relation of the current entity's type, avoiding chains that revisit an entity (so no hop can
 * be skipped by reading the answer off an earlier document).
 */
export function chainQuestion(world: KbWorld, rng: Rng, hops: number, id = ''): ChainQuestion {
  if (!Number.isInteger(hops) || hops < 1) throw new Error(`chainQuestion: hops must be an integer ≥ 1, got ${hops}`);
  for (let tries = 0; tries < 1000; tries++) {
    const start = world.entities[rng.int(world.entities.length)]!;
    const path = [start];
    const relations: string[] = [];
    const statements: string[] = [];
    let ok = true;
    for (let h = 0; h < hops && ok; h++) {
      const cur = path[path.length - 1]!;
      const fact = cur.facts[rng.int(cur.facts.length)]!;
      const next = world.byId.get(fact.object)!;
      if (path.includes(next)) ok = false;
      path.push(next);
      relations.push(fact.relation);
      statements.push(factSentence(world, cur, fact));
    }
    if (!ok) continue;
    return {
      id: id || `${world.name}-q${rng.nextU32().toString(16)}`,
      question: chainQuestionText(start.name, relations),
      answer: path[path.length - 1]!.name,
      hops,
      path: path.map((e) => e.id),
      relations,
      statements,
      world: world.name,
    };
  }
  throw new Error(`chainQuestion: no ${hops}-hop chain without repeated entities found in world '${world.name}' (world too small?)`);
}

/** Every word the KB's documents and questions use (for a word-level tokenizer's vocabulary). */
export function kbVocabulary(worlds: readonly KbWorld[]): string[] {
  const words = new Set<string>(['what', 'is', 'the', 'of', 'a', '?', '.', ...ENTITY_TYPES, ...RELATIONS.map((r) => r.name)]);
  for (const w of worlds) for (const e of w.entities) for (const p of e.name.split(' ')) words.add(p);
  return [...words];
}
