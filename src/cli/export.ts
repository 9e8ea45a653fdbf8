/**
 * `agentrl export`: a trainer checkpoint (written by `agentrl train`, src/train/trainer-checkpoint.ts)
 * as a Hugging Face model directory (LoRA merged in) or, with `--peft`, as a PEFT LoRA adapter.
 *
 * A trainer checkpoint stores the engine's `ModelConfig` and the tokenizer, not the Hugging Face
 * config it was loaded from. The ArchConfig is taken, in this order, from:
 *   1. `--base-model PATH` when PATH is the Hugging Face directory or .gguf the run started from
 *      (config.json or GGUF metadata; tokenizer files, generation_config.json and chat template are
 *      then copied from there);
 *   2. the architecture the run recorded: `agentrl train --model PATH` keeps the resolved model
 *      section (path and arch) in the run config inside the checkpoint; the tokenizer files are
 *      copied from that path when it is still there;
 *   3. otherwise it is derived from the ModelConfig (`archFromModelConfig`: family from the
 *      features, max_position_embeddings = the trained context length, eos = the tokenizer's EOS).
 * The tokenizer files come from the checkpoint's Hugging Face tokenizer; a checkpoint of the
 * built-in word-level tokenizer has none, and is refused for a merged export.
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { ArchConfig } from '../engine/arch.ts';
import { selectBackend } from '../engine/backends.ts';
import { latestCheckpoint, MANIFEST_FILE } from '../engine/checkpoint.ts';
import { archFromModelConfig, exportMergedHf, exportPeftAdapter } from '../train/export.ts';
import { ggufToHf } from '../engine/gguf-convert.ts';
import { parseHfConfig } from '../engine/hf-config.ts';
import { HfTokenizer } from '../engine/hf-tokenizer.ts';
import { HF_CONFIG_FILE } from '../engine/hf-weights.ts';
import { loadTrainerCheckpoint } from '../train/trainer-checkpoint.ts';

export interface ExportCliOptions {
  checkpoint: string;
  out: string;
  dtype?: 'bf16' | 'f32';
  peft?: boolean;
  /** The base model's directory/.gguf (for its config and tokenizer files), or a hub id written to the PEFT config. */
  baseModel?: string;
  overwrite?: boolean;
}

export interface ExportResult {
  files: string[];
  arch: ArchConfig;
  /** Where the ArchConfig came from: 'base-model', 'checkpoint' or 'derived'. */
  archSource: 'base-model' | 'checkpoint' | 'derived';
}

/** A checkpoint directory, or a directory of `step-*` checkpoints (its newest). */
async function resolveCheckpoint(dir: string): Promise<string> {
  if (!existsSync(dir)) throw new Error(`export: --checkpoint ${dir} does not exist`);
  if (existsSync(join(dir, MANIFEST_FILE))) return dir;
  const latest = await latestCheckpoint(dir).catch(() => null);
  if (latest) return latest;
  throw new Error(`export: --checkpoint ${dir} holds no ${MANIFEST_FILE} and no step-* checkpoints (pass the checkpoint directory agentrl train wrote, e.g. runs/<name>/checkpoint)`);
}

function looksLikeArch(x: unknown): x is ArchConfig {
  return typeof x === 'object' && x !== null && typeof (x as ArchConfig).family === 'string' && typeof (x as ArchConfig).hfArchitecture === 'string';
}

export async function runExport(o: ExportCliOptions): Promise<ExportResult> {
  const dtype = (o.dtype ?? 'bf16').toLowerCase();
  if (dtype !== 'bf16' && dtype !== 'f32') throw new Error(`export: --dtype must be bf16 or f32, got '${o.dtype}'`);
  const dir = await resolveCheckpoint(o.checkpoint);
  const { trainer, tokenizer, checkpoint } = await loadTrainerCheckpoint(dir, selectBackend());
  const model = trainer.model;
  const hfTokenizer = tokenizer instanceof HfTokenizer ? tokenizer : null;

  // `agentrl train --model PATH` records the model section as resolved (path and architecture) in the run config.
  const runModel = (checkpoint.trainerState as { config?: { model?: { path?: unknown; arch?: unknown } } } | null)?.config?.model;
  const runPath = typeof runModel?.path === 'string' ? runModel.path : undefined;
  const storedArch = [(checkpoint.config as { arch?: unknown } | null)?.arch, runModel?.arch].find(looksLikeArch);
  const baseModel = o.baseModel ?? runPath;

  let arch: ArchConfig;
  let archSource: ExportResult['archSource'];
  let tokenizerDir: string | undefined;
  let chatTemplate: string | undefined;
  if (o.baseModel !== undefined && existsSync(o.baseModel)) {
    const base = o.baseModel;
    if ((await stat(base)).isDirectory()) {
      const cfgPath = join(base, HF_CONFIG_FILE);
      if (!existsSync(cfgPath)) throw new Error(`export: --base-model ${base} has no ${HF_CONFIG_FILE} (pass the Hugging Face directory or .gguf file the run started from)`);
      arch = parseHfConfig(JSON.parse(await readFile(cfgPath, 'utf8')), cfgPath);
      if (existsSync(join(base, 'tokenizer.json'))) tokenizerDir = base;
    } else {
      const g = ggufToHf(await readFile(base), base);
      arch = g.arch;
      chatTemplate = g.tokenizer.chatTemplate ?? undefined;
    }
    archSource = 'base-model';
  } else if (storedArch) {
    arch = storedArch;
    archSource = 'checkpoint';
    // The run's model directory, when it is still there, ships the original tokenizer files (generation_config.json, chat template).
    if (runPath !== undefined && existsSync(join(runPath, 'tokenizer.json'))) tokenizerDir = runPath;
  } else {
    if (!hfTokenizer && !o.peft) throw refuseWordTokenizer(dir);
    arch = archFromModelConfig(model.config, { eosTokenIds: hfTokenizer ? [hfTokenizer.eosId] : [] });
    archSource = 'derived';
  }
  // Learned positions: the checkpoint holds contextLength rows of the position table; export those.
  if (arch.positions === 'learned' && arch.maxPositions !== model.config.contextLength) {
    console.warn(`agentrl export: the checkpoint keeps ${model.config.contextLength} learned positions (the base has ${arch.maxPositions}); the export has n_positions ${model.config.contextLength}`);
    arch = { ...arch, maxPositions: model.config.contextLength };
  }

  let files: string[];
  if (o.peft) {
    if (!trainer.lora) throw new Error(`export: --peft: checkpoint ${dir} was trained without LoRA (it has no adapter); export the full model without --peft`);
    ({ files } = await exportPeftAdapter(trainer.lora, arch, o.out, { baseModel, overwrite: o.overwrite }));
  } else {
    const tokenizerFrom = tokenizerDir ?? hfTokenizer;
    if (!tokenizerFrom) throw refuseWordTokenizer(dir);
    ({ files } = await exportMergedHf(model, arch, o.out, { dtype: dtype === 'f32' ? 'F32' : 'BF16', tokenizerFrom, chatTemplate, overwrite: o.overwrite }));
  }
  console.log(`exported ${o.peft ? 'the LoRA adapter (PEFT)' : `the ${trainer.lora ? 'LoRA-merged ' : ''}model (${dtype})`} of ${dir} (step ${checkpoint.step}) as ${arch.hfArchitecture} to ${o.out}: ${files.join(', ')}${archSource === 'derived' ? ' (config.json derived from the checkpoint\'s model config; pass --base-model <dir> to copy the original\'s)' : ''}`);
  return { files, arch, archSource };
}

function refuseWordTokenizer(dir: string): Error {
  return new Error(`export: checkpoint ${dir} uses agentrl's built-in word-level tokenizer, which has no Hugging Face tokenizer.json; only models trained from a Hugging Face directory or GGUF file can be exported (or pass --base-model <dir> holding the tokenizer)`);
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('Export a trainer checkpoint as a Hugging Face model directory (LoRA merged in; loads in transformers, vLLM, SGLang) or, with --peft, as a PEFT LoRA adapter.')
    .requiredOption('--checkpoint <dir>', 'checkpoint directory written by agentrl train (e.g. runs/<name>/checkpoint)')
    .requiredOption('--out <dir>', 'output directory (must not exist or be empty, unless --overwrite)')
    .option('--dtype <dtype>', 'stored dtype of the merged weights: bf16 or f32 (exact)', (v: string) => {
      const d = v.toLowerCase();
      if (d !== 'bf16' && d !== 'f32') throw new InvalidArgumentError(`expected bf16 or f32, got '${v}'`);
      return d;
    }, 'bf16')
    .option('--peft', 'write the LoRA adapter only (adapter_model.safetensors + adapter_config.json), in PEFT\'s format')
    .option('--base-model <path-or-id>', 'the Hugging Face directory or .gguf the run started from (its config.json and tokenizer files are used), or a hub id recorded as base_model_name_or_path')
    .option('--overwrite', 'replace a non-empty output directory')
    .action(async (o: ExportCliOptions) => {
      await runExport(o);
    });
}
