/**
 * The synthetic knowledge base (src/synth/kb.ts): worlds are a function of their options; worlds
 * share name words but never a full name; every fact is typed as its relation says and never points
 * at its subject; documents state exactly an entity's facts; chain questions of 1–8 hops are answered
 * by following their relations, their statements are that chain, and bad hop counts are refused.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Rng } from '../src/core/rng.ts';
import {
  ENTITY_TYPES,
  RELATIONS,
  chainQuestion,
  chainQuestionText,
  factSentence,
  follow,
  generateWorlds,
  kbVocabulary,
  nameWords,
  worldDocs,
  type KbEntity,
  type KbWorld,
} from '../src/synth/kb.ts';

const RELATION = new Map(RELATIONS.map((r) => [r.name, r]));

function words(w: KbWorld): Set<string> {
  return new Set(w.entities.flatMap((e) => e.name.split(' ')));
}

/** A hand-made world: ids are the keys, facts name objects by key. */
function handWorld(name: string, spec: Record<string, { name: string; type: KbEntity['type']; facts: Record<string, string> }>): KbWorld {
  const entities: KbEntity[] = Object.entries(spec).map(([id, e]) => ({ id, name: e.name, type: e.type, facts: Object.entries(e.facts).map(([relation, object]) => ({ relation, object })) }));
  return { name, entities, byId: new Map(entities.map((e) => [e.id, e])) };
}

describe('nameWords', () => {
  it('gives n distinct two-syllable consonant-vowel words, never a relation name, the same for the same seed', () => {
    const a = nameWords(50, 7);
    expect(a).toHaveLength(50);
    expect(new Set(a).size).toBe(50);
    for (const w of a) expect(w).toMatch(/^[bdfgklmnprstvz][aeiou][bdfgklmnprstvz][aeiou]$/);
    expect(nameWords(50, 7)).toEqual(a);
    expect(nameWords(50, 8)).not.toEqual(a);
  });

  it('refuses more words than the syllables allow', () => {
    // 14 consonants × 5 vowels = 70 one-syllable words; at most half may be asked for.
    expect(nameWords(35, 1, 1)).toHaveLength(35);
    expect(() => nameWords(36, 1, 1)).toThrow(/36 words of 1 syllables is too many \(at most 35\)/);
  });
});

describe('generateWorlds', () => {
  const opts = { seed: 11, perType: 6, worlds: ['train', 'heldout'] };

  it('is deterministic given its options, and the seed matters', () => {
    const a = generateWorlds(opts);
    const b = generateWorlds(opts);
    expect(a.map((w) => worldDocs(w))).toEqual(b.map((w) => worldDocs(w)));
    expect(a.map((w) => w.entities)).toEqual(b.map((w) => w.entities));
    const c = generateWorlds({ ...opts, seed: 12 });
    expect(c.map((w) => worldDocs(w))).not.toEqual(a.map((w) => worldDocs(w)));
  });

  it('has perType entities of each type per world, with world-prefixed ids', () => {
    for (const w of generateWorlds(opts)) {
      expect(w.entities).toHaveLength(6 * ENTITY_TYPES.length);
      for (const t of ENTITY_TYPES) expect(w.entities.filter((e) => e.type === t)).toHaveLength(6);
      expect(w.entities.map((e) => e.id)).toEqual(w.entities.map((_, i) => `${w.name}-${i}`));
      for (const e of w.entities) expect(w.byId.get(e.id)).toBe(e);
    }
  });

  it('worlds share name words but no full name; names are unique within a world', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 4, max: 30 }), (seed, perType) => {
        const [train, heldout] = generateWorlds({ seed, perType, worlds: ['train', 'heldout'] });
        const trainNames = new Set(train!.entities.map((e) => e.name));
        const heldoutNames = heldout!.entities.map((e) => e.name);
        expect(trainNames.size).toBe(train!.entities.length);
        expect(new Set(heldoutNames).size).toBe(heldoutNames.length);
        expect(heldoutNames.filter((n) => trainNames.has(n))).toEqual([]);
        // Shared words: at least one first word and one last word of the held-out world occur in training names.
        const firsts = new Set(train!.entities.map((e) => e.name.split(' ')[0]));
        const lasts = new Set(train!.entities.map((e) => e.name.split(' ')[1]));
        expect(heldout!.entities.some((e) => firsts.has(e.name.split(' ')[0]!))).toBe(true);
        expect(heldout!.entities.some((e) => lasts.has(e.name.split(' ')[1]!))).toBe(true);
      }),
      { numRuns: 60 },
    );
    // A hand-checkable case: with the pool at its minimum every name of the grid is dealt, so both
    // worlds together use every word, and each world's words overlap the other's.
    const [a, b] = generateWorlds({ seed: 3, perType: 2, worlds: ['a', 'b'], poolSize: 4 });
    expect(new Set([...a!.entities, ...b!.entities].map((e) => e.name)).size).toBe(16);
    expect([...words(a!)].filter((x) => words(b!).has(x)).length).toBeGreaterThan(0);
  });

  it('every fact has the object type of its relation, in the same world, never the subject; one fact per relation of the type', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 2, max: 12 }), (seed, perType) => {
        for (const w of generateWorlds({ seed, perType, worlds: ['train', 'heldout'] })) {
          for (const e of w.entities) {
            expect(e.facts.map((f) => f.relation)).toEqual(RELATIONS.filter((r) => r.from === e.type).map((r) => r.name));
            for (const f of e.facts) {
              const o = w.byId.get(f.object);
              expect(o, `${e.id} ${f.relation} → ${f.object}`).toBeDefined();
              expect(o!.type).toBe(RELATION.get(f.relation)!.to);
              expect(o!.id).not.toBe(e.id);
            }
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('refuses a name pool too small for the entities', () => {
    expect(() => generateWorlds({ seed: 0, perType: 5, worlds: ['a', 'b'], poolSize: 6 })).toThrow(/a pool of 6 words gives 36 names, fewer than the 40 entities/);
  });
});

describe('documents', () => {
  const w = handWorld('hand', {
    p: { name: 'ana bel', type: 'person', facts: { employer: 'k', birthplace: 'c' } },
    k: { name: 'acme co', type: 'company', facts: { founder: 'p', headquarters: 'c' } },
    c: { name: 'xan ton', type: 'city', facts: { mayor: 'p' } },
  });

  it('renders one document per entity: its name, its type, then its facts (hand-computed)', () => {
    expect(worldDocs(w)).toEqual([
      { id: 'p', url: 'kb://hand/p', title: 'ana bel', contents: 'ana bel is a person . the employer of ana bel is acme co . the birthplace of ana bel is xan ton .' },
      { id: 'k', url: 'kb://hand/k', title: 'acme co', contents: 'acme co is a company . the founder of acme co is ana bel . the headquarters of acme co is xan ton .' },
      { id: 'c', url: 'kb://hand/c', title: 'xan ton', contents: 'xan ton is a city . the mayor of xan ton is ana bel .' },
    ]);
    expect(factSentence(w, w.byId.get('k')!, { relation: 'founder', object: 'p' })).toBe('the founder of acme co is ana bel .');
  });

  it('a generated world\'s document states each fact of its entity', () => {
    const [g] = generateWorlds({ seed: 5, perType: 4, worlds: ['g'] });
    const docs = worldDocs(g!);
    expect(docs).toHaveLength(g!.entities.length);
    for (const [i, e] of g!.entities.entries()) {
      expect(docs[i]!.title).toBe(e.name);
      expect(docs[i]!.contents.startsWith(`${e.name} is a ${e.type} .`)).toBe(true);
      for (const f of e.facts) expect(docs[i]!.contents).toContain(`the ${f.relation} of ${e.name} is ${g!.byId.get(f.object)!.name} .`);
    }
  });

  it('follow reads a fact and names the missing relation', () => {
    expect(follow(w, w.byId.get('p')!, 'employer').name).toBe('acme co');
    expect(() => follow(w, w.byId.get('c')!, 'twin')).toThrow(/a city has no 'twin'/);
  });

  it('the vocabulary covers every token of documents and questions', () => {
    const worlds = generateWorlds({ seed: 2, perType: 4, worlds: ['train', 'heldout'] });
    const vocab = new Set(kbVocabulary(worlds));
    const rng = new Rng(1);
    for (const world of worlds) {
      for (const d of worldDocs(world)) for (const t of d.contents.split(' ')) expect(vocab.has(t), t).toBe(true);
      for (let h = 1; h <= 4; h++) for (const t of chainQuestion(world, rng, h).question.split(' ')) expect(vocab.has(t), t).toBe(true);
    }
  });
});

describe('chainQuestion', () => {
  const [world] = generateWorlds({ seed: 21, perType: 10, worlds: ['w'] });

  it('for 1–8 hops: the answer is the end of following the relations, the statements are the chain, the text nests the relations', () => {
    const rng = new Rng(99);
    for (let hops = 1; hops <= 8; hops++) {
      for (let k = 0; k < 5; k++) {
        const q = chainQuestion(world!, rng, hops);
        expect(q.hops).toBe(hops);
        expect(q.relations).toHaveLength(hops);
        expect(q.path).toHaveLength(hops + 1);
        expect(new Set(q.path).size).toBe(hops + 1);
        let e = world!.byId.get(q.path[0]!)!;
        for (const [i, r] of q.relations.entries()) {
          const next = follow(world!, e, r);
          expect(next.id).toBe(q.path[i + 1]);
          expect(q.statements[i]).toBe(`the ${r} of ${e.name} is ${next.name} .`);
          e = next;
        }
        expect(q.answer).toBe(e.name);
        expect(q.question).toBe(chainQuestionText(world!.byId.get(q.path[0]!)!.name, q.relations));
        expect(q.question).not.toContain(q.answer);
        expect(q.world).toBe('w');
      }
    }
  });

  it('the text reads innermost-first (hand-computed)', () => {
    expect(chainQuestionText('ana bel', ['employer', 'founder', 'birthplace'])).toBe('what is the birthplace of the founder of the employer of ana bel ?');
  });

  it('is deterministic given the rng state and keeps a given id', () => {
    const a = chainQuestion(world!, new Rng(4), 5, 'q-1');
    const b = chainQuestion(world!, new Rng(4), 5, 'q-1');
    expect(b).toEqual(a);
    expect(a.id).toBe('q-1');
    expect(chainQuestion(world!, new Rng(4), 5).id).toMatch(/^w-q[0-9a-f]+$/);
  });

  it('refuses bad hop counts', () => {
    for (const h of [0, -1, 1.5, Number.NaN]) expect(() => chainQuestion(world!, new Rng(0), h)).toThrow(/hops must be an integer ≥ 1/);
  });

  it('says so when no chain without a repeated entity exists', () => {
    // Two cities twinned with each other: every 2-hop chain comes back to its start.
    const tiny = handWorld('tiny', {
      a: { name: 'ana ton', type: 'city', facts: { twin: 'b' } },
      b: { name: 'bo ton', type: 'city', facts: { twin: 'a' } },
    });
    expect(chainQuestion(tiny, new Rng(0), 1).statements).toHaveLength(1);
    expect(() => chainQuestion(tiny, new Rng(0), 2)).toThrow(/no 2-hop chain without repeated entities found in world 'tiny'/);
  });
});
