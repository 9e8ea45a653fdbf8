/** The `agentrl` command line. */
import { Command } from 'commander';
import { runQuickstart } from './quickstart.ts';
import { runEval } from './eval.ts';
import { runTrainCommand } from './train.ts';
import { registerSynth } from './synth.ts';
import { registerEvalSearch } from './eval-search.ts';
import { registerIndexCommands } from './index-build.ts';
import { registerServeCommands } from './serve.ts';
import { registerGenerate } from './generate.ts';
import { registerExport } from './export.ts';
import { registerDashboard } from './dashboard.ts';
import { registerWorker } from './worker.ts';
import { registerPlot } from './plot.ts';
import { createRequire } from 'node:module';
import { int } from './option-parsers.ts';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

const program = new Command()
  .name('agentrl')
  .description('RL training of LLM agents: multi-episode meta-RL (MAGE) and asynchronous agentic RL, on the built-in CPU engine.')
  .version(version)
  .showHelpAfterError()
  .enablePositionalOptions();

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

program
  .command('train')
  .description('Train any built-in task (bandit, kuhn, tictactoe, sokoban, rps, toy-tool, search) from a YAML/JSON config, synchronously (trainer.maxStaleness 0) or asynchronously, with or without a population; writes config.json, metrics.jsonl, checkpoint/, eval.json, plot.svg, plot.png and tb/ (TensorBoard) to the run directory. Examples: examples/configs/*.yaml.')
  .argument('<config>', 'run config (YAML or JSON)')
  .option('--out <dir>', 'run directory (default runs/<config name>)')
  .option('--set <key=value>', 'override a config field by its dotted path, e.g. --set trainer.steps=10 (repeatable)', collect, [])
  .option('--resume', 'continue from the run directory\'s checkpoint (the config must be unchanged)')
  .option('--model <path>', 'train a pretrained model (a Hugging Face directory or a .gguf file) with its own tokenizer: sets model to { path } before --set (e.g. --set model.lora.rank=8)')
  .option('--json', 'print JSON lines on stdout (start, one per step, a final summary) instead of a progress bar or plain lines')
  .action(async (config: string, o: { out?: string; set: string[]; resume?: boolean; model?: string; json?: boolean }) => {
    await runTrainCommand(config, { out: o.out, set: o.set, resume: !!o.resume, model: o.model, json: !!o.json });
  });

program
  .command('quickstart')
  .description('Train a meta-RL agent on the built-in engine (3-episode bandit trials), evaluate it against the untrained and a random policy, and write eval.json, eval.md and plot.svg to the run directory.')
  .option('--out <dir>', 'run directory', 'runs/quickstart')
  .option('--iterations <n>', 'training iterations', int)
  .option('--seed <n>', 'seed', int, 0)
  .option('--quick', 'a shorter run (CI smoke test)')
  .action(async (o: { out: string; iterations?: number; seed: number; quick?: boolean }) => {
    await runQuickstart({ out: o.out, iterations: o.iterations, seed: o.seed, quick: !!o.quick });
  });

const evalCommand = program
  .command('eval')
  // `eval search` has options of the same names: the parent's are only read before the subcommand.
  .enablePositionalOptions()
  .description('Evaluate a trained checkpoint in K-episode trials per opponent and episode index; writes eval.json and eval.md.')
  // Not a requiredOption: commander would then demand it of `eval search` too.
  .option('--checkpoint <dir>', 'checkpoint directory (e.g. runs/quickstart/checkpoint); required')
  .option('--out <dir>', 'output directory (default: the checkpoint\'s parent)')
  .option('--trials <n>', 'trials per opponent', int, 300)
  .option('--seed <n>', 'evaluation seed', int, 0)
  .option('--episodes <n>', 'episodes per trial (default: as trained)', int)
  .option('--opponents <list>', 'comma-separated opponents (default: as trained)')
  .option('--temperature <x>', 'sampling temperature (default: as trained)', Number)
  .option('--top-p <x>', 'nucleus sampling, in (0, 1] (default: as trained, normally off)', Number)
  .option('--top-k <n>', 'keep the k most likely tokens, 0 = off (default: as trained, normally off)', Number)
  .option('--json', 'print JSON lines on stdout (start, one per finished trial, a final summary) instead of a progress bar or plain lines and the table')
  .action(async (o: { checkpoint?: string; out?: string; trials: number; seed: number; episodes?: number; opponents?: string; temperature?: number; topP?: number; topK?: number; json?: boolean }) => {
    if (!o.checkpoint) throw new Error("eval: --checkpoint <dir> is required (or evaluate a search agent with 'agentrl eval search')");
    await runEval({ ...o, checkpoint: o.checkpoint, opponents: o.opponents?.split(',').filter(Boolean), json: !!o.json });
  });

registerEvalSearch(evalCommand);
registerSynth(program);

registerIndexCommands(program);
registerServeCommands(program);
registerGenerate(program);
registerExport(program);
registerDashboard(program);
registerWorker(program);
registerPlot(program);

if (process.argv.length <= 2) {
  program.outputHelp();
  process.exit(0);
}

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`agentrl: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
