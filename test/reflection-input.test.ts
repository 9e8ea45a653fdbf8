import { describe, expect, it } from 'vitest';
import { runTrial, TRIAL_WORDS, outcomeVocabulary } from '../src/agents/trial.ts';
import { WordTokenizer } from '../src/engine/tokenizer.ts';
import { BanditEnv } from '../src/envs/bandit.ts';
import { scriptedTrialEngine as scripted } from './helpers/scripted-trial-engine.ts';
import { parseRunConfig } from '../src/run/run-config.ts';
import { trialParts } from '../src/run/run.ts';
import { defaultBackend } from '../src/engine/backends.ts';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

describe("trial reflectionInput 'outcome'", () => {
  it('the reflection prompt shows only the fused outcome token; later play prompts show only the remarks', async () => {
    const env = new BanditEnv();
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, ...outcomeVocabulary(['A', 'B', 'C'])]);
    env.reset(3);
    const best = ['A', 'B', 'C'][env.bestArm]!;
    const wrong = best === 'A' ? 'B' : 'A';
    const engine = scripted(tok, [`<action> ${wrong} </action>`, `<remark> ${best} </remark>`, `<action> ${best} </action>`, `<remark> ${best} </remark>`, `<action> ${best} </action>`]);
    const t = await runTrial(env, engine, { episodes: 3, contextMode: 'reflection_only', reflectionInput: 'outcome', remarkWords: [], maxRemarkWords: 1, rules: 'none' }, { seed: 3, groupId: 'g', opponent: 'none' });
    expect(t.episodes!.map((e) => e.reward)).toEqual([0, 1, 1]);
    expect(engine.prompts[1]).toBe(`| reflect ep 1 ${wrong}_lost | remark :`);
    expect(engine.prompts[3]).toBe(`| reflect ep 2 ${best}_won | remark :`);
    // Episode 3 sees the two remarks and nothing else of the past.
    expect(engine.prompts[4]).toBe(`| trial 3 of 3 | ep 1 remark : ${best} | ep 2 remark : ${best} | now moves none | choose one arm | arms A B C ->`);
  });

  it("the default ('moves') keeps the reflection prompt as before", async () => {
    const env = new BanditEnv();
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS]);
    const engine = scripted(tok, ['<action> A </action>', '<remark> B </remark>', '<action> B </action>']);
    await runTrial(env, engine, { episodes: 2, contextMode: 'reflection_only', rules: 'none' }, { seed: 3, groupId: 'g', opponent: 'none' });
    expect(engine.prompts[1]).toMatch(/^\| reflect ep 1 moves choose one arm \| arms A B C -> A result (won|lost) \| remark :$/);
  });

  it('a remark of bandit-reflect.yaml is one fused outcome word: after <remark> only those or </remark>, then only </remark>', async () => {
    const cfg = parseRunConfig(parse(readFileSync('examples/configs/bandit-reflect.yaml', 'utf8')));
    const env = new BanditEnv({ arms: 2 });
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, ...outcomeVocabulary(['A', 'B', 'C'])]);
    const engine = scripted(tok, ['<action> A </action>', '<remark> A_lost </remark>', '<action> B </action>']);
    await runTrial(env, engine, { ...cfg.trial, episodes: 2 }, { seed: 3, groupId: 'g', opponent: 'none' });
    const c = engine.params[1]!.constraint!;
    const allowed = (m: Uint8Array | null) => [...m!].flatMap((v, id) => (v ? [tok.tokenString(id)] : [])).sort();
    const open = tok.tokenId('<remark>')!;
    expect(allowed(c([]))).toEqual(['<remark>']);
    expect(allowed(c([open]))).toEqual(['</remark>', 'A_lost', 'A_won', 'B_lost', 'B_won']);
    expect(allowed(c([open, tok.tokenId('A_lost')!]))).toEqual(['</remark>']);
    expect(engine.prompts[2]).toContain('| ep 1 remark : A_lost |');
  });

  it("a default remark may name the env's actions, though none is legal once the episode is over", async () => {
    const env = new BanditEnv({ arms: 3 });
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS, 'good', 'bad', 'try', 'avoid']);
    const engine = scripted(tok, ['<action> A </action>', '<remark> avoid A </remark>', '<action> B </action>']);
    await runTrial(env, engine, { episodes: 2, reflect: true, rules: 'none', maxRemarkWords: 2 }, { seed: 3, groupId: 'g', opponent: 'none' });
    expect(env.legalActions()).toEqual([]);
    const c = engine.params[1]!.constraint!;
    const allowed = (m: Uint8Array | null) => [...m!].flatMap((v, id) => (v ? [tok.tokenString(id)] : [])).sort();
    expect(allowed(c([tok.tokenId('<remark>')!]))).toEqual(['</remark>', 'A', 'B', 'C', 'avoid', 'bad', 'good', 'try']);
    expect(engine.prompts[2]).toContain('remark : avoid A');
    // remarkActions: false keeps only the configured words.
    const engine2 = scripted(tok, ['<action> A </action>', '<remark> avoid </remark>', '<action> B </action>']);
    await runTrial(new BanditEnv({ arms: 3 }), engine2, { episodes: 2, reflect: true, rules: 'none', maxRemarkWords: 2, remarkActions: false }, { seed: 3, groupId: 'g', opponent: 'none' });
    expect(allowed(engine2.params[1]!.constraint!([tok.tokenId('<remark>')!]))).toEqual(['</remark>', 'avoid', 'bad', 'good', 'try']);
  });

  it('without reflections, reflection_only shows nothing of past episodes (the control arm)', async () => {
    const env = new BanditEnv();
    const tok = WordTokenizer.fromVocabulary([...env.vocabulary(), ...TRIAL_WORDS]);
    const engine = scripted(tok, ['<action> A </action>', '<action> B </action>']);
    await runTrial(env, engine, { episodes: 2, contextMode: 'reflection_only', reflect: false, rules: 'none' }, { seed: 3, groupId: 'g', opponent: 'none' });
    expect(engine.prompts[1]).toBe('| trial 2 of 2 | ep 1 | now moves none | choose one arm | arms A B C ->');
  });

  it("agentrl train's tokenizer holds the outcome tokens the reflection prompt uses (bandit-reflect.yaml)", () => {
    const cfg = parseRunConfig(parse(readFileSync('examples/configs/bandit-reflect.yaml', 'utf8')));
    expect(cfg.trial.reflectionInput).toBe('outcome');
    expect(cfg.trial.pastEpisodes).toBe('moves');
    const parts = trialParts(cfg, defaultBackend(), null);
    for (const w of ['A_won', 'A_lost', 'B_won', 'B_lost']) expect(parts.engine.tokenizer.tokenId(w)).toBeDefined();
    const off = parseRunConfig(parse(readFileSync('examples/configs/bandit-reflect-off.yaml', 'utf8')));
    // The control differs from the reflection arm in `reflect` (and its name) only.
    expect({ ...off, name: cfg.name, trial: { ...off.trial, reflect: true } }).toEqual(cfg);
  });
});
