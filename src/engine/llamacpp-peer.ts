/**
 * llama.cpp as an optional third-party reference: load a GGUF with the prebuilt llama.cpp that the
 * npm package `node-llama-cpp` ships (`@node-llama-cpp/linux-x64`, CPU only) and read back the
 * next-token log-probabilities it computes, to check our GGUF writer and our engine against an
 * independent implementation.
 *
 * Install behaviour (package.json): node-llama-cpp is a devDependency (tests and benchmarks only:
 * users of agentrl never install it), and `npm ci` neither downloads (other than npm registry
 * tarballs) nor builds anything for it:
 *  - its postinstall (`node ./dist/cli/cli.js postinstall`) probes the prebuilt binary and, if
 *    that fails, downloads llama.cpp's sources from GitHub and compiles them. Three guards stop it:
 *    `"allowScripts": {"node-llama-cpp": false}` (npm 11.19, used here, skips a denied package's
 *    install scripts; unreviewed ones would still run, with a warning); for npm versions that
 *    ignore allowScripts, `"config": {"nodeLlamaCppPostinstall": "skip"}` in our package.json,
 *    which that postinstall reads and exits on ("Skipping node-llama-cpp postinstall due to a
 *    'skip' configuration"); and NODE_LLAMA_CPP_SKIP_DOWNLOAD=true, which .ci/run exports and
 *    which makes it exit before anything else.
 *  - its per-platform binary packages are optionalDependencies too, and npm fetches every one
 *    whose os/cpu/libc match linux-x64-glibc: CUDA, CUDA-ext, Vulkan and (they list x64 as a cpu)
 *    the ARM builds, ~700 MB unpacked. `overrides` point all of them except
 *    `@node-llama-cpp/linux-x64` (the CPU build, 11 MB download) at scripts/empty-package, so
 *    nothing else is fetched (and the lockfile does not depend on the mac/win binaries, which the
 *    registry mirror used here lacks for 3.22.x).
 *  - at run time we call `getLlama({ gpu: false, build: 'never', skipDownload: true })`: use the
 *    prebuilt CPU binary or fail, never build or download.
 *
 * The module is imported lazily: when it is missing or its binary does not load, `openLlamaCppPeer`
 * returns `{ ok: false, reason }` instead of throwing, and tests report the reason (CI sets
 * AGENTRL_REQUIRE_LLAMACPP=1 to turn that into a failure).
 */

/** The subset of node-llama-cpp's API used here (typed locally: the package is optional). */
interface NlcSequence {
  controlledEvaluate(input: [number, { generateNext: { logits: true } }][]): Promise<({ next: { logits?: Map<number, number> } } | undefined)[]>;
  clearHistory(): Promise<void>;
}
interface NlcContext { contextSize: number; getSequence(): NlcSequence; dispose(): Promise<void> }
interface NlcModel {
  createContext(opts: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  llamaCppRelease: { repo: string; release: string };
  buildType: string;
  gpu: string | false;
  loadModel(opts: Record<string, unknown>): Promise<NlcModel>;
  dispose(): Promise<void>;
}
interface NlcModule { getLlama(opts: Record<string, unknown>): Promise<NlcLlama> }

export interface LlamaCppPeerOptions {
  /** CPU threads llama.cpp uses (default 1: deterministic and polite on shared machines). */
  threads?: number;
  /** Context size to allocate (default: 256, llama.cpp's granularity). */
  contextSize?: number;
}

export interface LlamaCppPeer {
  /** e.g. "ggml-org/llama.cpp@b1234 (prebuilt)". */
  readonly description: string;
  /** Log-softmax over the vocabulary of the next-token logits at each position of `tokens`. */
  logSoftmax(tokens: number[]): Promise<Float64Array[]>;
  /** The logprob llama.cpp gives tokens[t + 1] after tokens[0..t], for t = 0..T-2. */
  tokenLogprobs(tokens: number[]): Promise<number[]>;
  dispose(): Promise<void>;
}

export type LlamaCppPeerResult = { ok: true; peer: LlamaCppPeer } | { ok: false; reason: string };

let llamaPromise: Promise<{ ok: true; llama: NlcLlama } | { ok: false; reason: string }> | null = null;

/** Load node-llama-cpp and its prebuilt CPU binary once per process. */
function loadLlama(): Promise<{ ok: true; llama: NlcLlama } | { ok: false; reason: string }> {
  llamaPromise ??= (async () => {
    let mod: NlcModule;
    try {
      const specifier = 'node-llama-cpp'; // not a literal import: the package is optional, also for tsc
      mod = (await import(specifier)) as NlcModule;
    } catch (e) {
      return { ok: false as const, reason: `node-llama-cpp is not installed (${(e as Error).message.split('\n')[0]}); it is a devDependency: run npm ci on linux-x64` };
    }
    try {
      const llama = await mod.getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: 'error', skipDownload: true });
      return { ok: true as const, llama };
    } catch (e) {
      return { ok: false as const, reason: `node-llama-cpp is installed but its prebuilt llama.cpp binary did not load (${(e as Error).message.split('\n')[0]}); no build or download is attempted` };
    }
  })();
  return llamaPromise;
}

/** Whether llama.cpp can be used here, and why not. */
export async function llamaCppAvailability(): Promise<{ ok: true; description: string } | { ok: false; reason: string }> {
  const r = await loadLlama();
  return r.ok ? { ok: true, description: describe(r.llama) } : r;
}

function describe(llama: NlcLlama): string {
  return `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release} (${llama.buildType}, ${llama.gpu === false ? 'CPU' : llama.gpu})`;
}

function logSoftmaxOf(logits: Map<number, number>, vocabSize: number, where: string): Float64Array {
  if (logits.size !== vocabSize) throw new Error(`llama.cpp returned ${logits.size} logits at ${where}, expected the whole vocabulary of ${vocabSize}`);
  const z = new Float64Array(vocabSize);
  for (const [tok, v] of logits) z[tok] = v;
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return z.map((v) => v - lse);
}

/**
 * Open a GGUF model in llama.cpp (CPU, F32 K/V cache, no flash attention, `threads` threads).
 * Returns `{ ok: false }` only when llama.cpp itself is unavailable; a model llama.cpp rejects throws.
 */
export async function openLlamaCppPeer(ggufPath: string, vocabSize: number, opts: LlamaCppPeerOptions = {}): Promise<LlamaCppPeerResult> {
  const r = await loadLlama();
  if (!r.ok) return r;
  const threads = opts.threads ?? 1;
  const model = await r.llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: false, defaultContextFlashAttention: false });
  let context: NlcContext;
  try {
    context = await model.createContext({
      contextSize: opts.contextSize ?? 256,
      sequences: 1,
      threads: { ideal: threads, min: threads },
      flashAttention: false,
      // F16 is llama.cpp's default K/V cache type; F32 keeps the comparison at float32 precision.
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
  } catch (e) {
    await model.dispose();
    throw e;
  }
  const sequence = context.getSequence();
  const peer: LlamaCppPeer = {
    description: describe(r.llama),
    async logSoftmax(tokens: number[]): Promise<Float64Array[]> {
      if (tokens.length > context.contextSize) throw new Error(`llama.cpp peer: ${tokens.length} tokens exceed the context of ${context.contextSize}`);
      await sequence.clearHistory();
      const out = await sequence.controlledEvaluate(tokens.map((t) => [t, { generateNext: { logits: true } }]));
      return tokens.map((_, i) => {
        const logits = out[i]?.next.logits;
        if (!logits) throw new Error(`llama.cpp returned no logits for position ${i}`);
        return logSoftmaxOf(logits, vocabSize, `position ${i}`);
      });
    },
    async tokenLogprobs(tokens: number[]): Promise<number[]> {
      const ls = await peer.logSoftmax(tokens);
      return tokens.slice(1).map((t, i) => ls[i]![t]!);
    },
    async dispose(): Promise<void> {
      await context.dispose();
      await model.dispose();
    },
  };
  return { ok: true, peer };
}
