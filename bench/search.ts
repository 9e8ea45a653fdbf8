/**
 * `npm run bench:search [-- --quick] [--concurrent N] [--latency-ms L]`: the search agent's loop with a
 * stub policy (the KB's scripted searcher, src/agents/search/kb-oracle.ts) against the local BM25 index,
 * many trajectories in flight in one process through the rollout controller.
 *
 * Two runs:
 * - CPU-bound (the policy answers at once): wall = tool time + policy time + orchestration, so the
 *   orchestration overhead per turn = (wall − time in search calls − time in the policy) / turns;
 * - with a policy latency (a remote LLM's, default 20 ms per call): shows that N trajectories stay in
 *   flight and what turn rate that sustains.
 * The last line is one JSON object: {concurrent, turns_per_s, p99_tool_ms, overhead_ms_per_turn, …}.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ScriptedEngine } from '../src/engine/scripted-engine.ts';
import type { InferenceEngine, SamplingParams } from '../src/engine/types.ts';
import { kbOraclePolicy } from '../src/agents/search/kb-oracle.ts';
import { searchWorkflow } from '../src/agents/search/workflow.ts';
import type { SearchItem } from '../src/agents/search/config.ts';
import { heldoutQuestions, SearchTaskSchema, searchTokenizer, searchTools, searchWorlds } from '../src/run/search-task.ts';
import { RolloutController } from '../src/train/rollout-controller.ts';
import type { SearchBackend } from '../src/tools/types.ts';

const args = process.argv.slice(2);
const flag = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes('--quick');
const concurrent = flag('--concurrent', 1000);
const latencyMs = flag('--latency-ms', 20);
const questions = flag('--questions', quick ? 2 * concurrent : 5 * concurrent);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
}

async function run(latency: number, items: SearchItem[], tools: { search: SearchBackend }, tokenizer: ReturnType<typeof searchTokenizer>, agent: ReturnType<typeof SearchTaskSchema.parse>['agent']) {
  const toolMs: number[] = [];
  let policyMs = 0;
  const search: SearchBackend = {
    name: 'timed-bm25',
    search: (q, k, signal) => {
      // BM25 runs synchronously inside the call: time the call itself, not its await (which would
      // count the other trajectories' turns queued before this continuation).
      const t0 = performance.now();
      const hits = tools.search.search(q, k, signal);
      toolMs.push(performance.now() - t0);
      return hits;
    },
  };
  const inner = new ScriptedEngine(tokenizer, kbOraclePolicy);
  const engine: InferenceEngine = {
    tokenizer, version: () => 0,
    generate: async (prompt: readonly number[], params: SamplingParams) => {
      const t0 = performance.now();
      const pending = inner.generate(prompt, params); // synchronous work, as above
      policyMs += performance.now() - t0;
      const out = await pending;
      if (latency > 0) await new Promise((r) => setTimeout(r, latency));
      return out;
    },
  };
  const rc = new RolloutController<SearchItem>({
    config: { batchSize: items.length, groupSize: 1, maxConcurrent: concurrent, maxRetries: 0, maxConsecutiveDrops: 1 },
    source: items, workflow: searchWorkflow(engine, { search }, agent),
  });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rc.metrics().totals.runningRuns)), 5);
  const t0 = performance.now();
  rc.start();
  const groups = await rc.nextBatchGroups(0);
  const wallMs = performance.now() - t0;
  clearInterval(sampler);
  await rc.stop();
  const trajs = groups.flatMap((g) => g.trajectories);
  const turns = trajs.reduce((a, t) => a + (t.info.turns as number), 0);
  const correct = trajs.filter((t) => t.info.em === 1).length / trajs.length;
  const toolTotal = toolMs.reduce((a, b) => a + b, 0);
  return {
    latency_ms: latency, trajectories: trajs.length, peak_in_flight: peak, turns, wall_s: wallMs / 1000, turns_per_s: turns / (wallMs / 1000),
    p50_tool_ms: percentile(toolMs, 0.5), p99_tool_ms: percentile(toolMs, 0.99), tool_ms_per_turn: toolTotal / turns, policy_ms_per_turn: policyMs / turns,
    overhead_ms_per_turn: latency === 0 ? (wallMs - toolTotal - policyMs) / turns : Number.NaN, exact_match: correct,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'agentrl-bench-search-'));
try {
  const task = SearchTaskSchema.parse({
    kb: { seed: 0, perType: 250, docs: 'fact' },
    agent: { prompt: 'bare', topK: 5, allowAccess: false, maxNewTokens: 16, maxTotalTokens: 4096, maxTurns: 16, docTemplate: 'doc {i} : {contents}' },
  });
  const worlds = searchWorlds(task);
  const tokenizer = searchTokenizer(worlds, task.agent);
  const tools = await searchTools(task, worlds, dir);
  const items = heldoutQuestions(worlds.heldout, 7, [1, 2, 3, 4], Math.ceil(questions / 4));
  const passages = [worlds.train, worlds.heldout, worlds.demo].reduce((a, w) => a + w.entities.reduce((b, e) => b + e.facts.length, 0), 0);
  console.log(`bench:search: ${items.length} questions (1–4 hops), ${concurrent} in flight, BM25 over ${passages} passages`);
  const cpu = await run(0, items, tools, tokenizer, task.agent);
  console.log(`  CPU-bound: ${cpu.turns_per_s.toFixed(0)} turns/s, peak ${cpu.peak_in_flight} in flight, tool p50 ${cpu.p50_tool_ms.toFixed(3)} ms p99 ${cpu.p99_tool_ms.toFixed(3)} ms, policy ${cpu.policy_ms_per_turn.toFixed(3)} ms/turn, orchestration ${cpu.overhead_ms_per_turn.toFixed(3)} ms/turn, EM ${cpu.exact_match.toFixed(3)}`);
  const slow = await run(latencyMs, items, tools, tokenizer, task.agent);
  console.log(`  policy latency ${latencyMs} ms: ${slow.turns_per_s.toFixed(0)} turns/s, peak ${slow.peak_in_flight} in flight, wall ${slow.wall_s.toFixed(1)} s`);
  tools.close();
  console.log(JSON.stringify({
    concurrent: slow.peak_in_flight, turns_per_s: slow.turns_per_s, p99_tool_ms: cpu.p99_tool_ms, overhead_ms_per_turn: cpu.overhead_ms_per_turn,
    cpu_bound: cpu, with_latency: slow, quick,
  }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
