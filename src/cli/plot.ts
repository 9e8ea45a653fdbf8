/**
 * `agentrl plot RUN`: a run directory's figure and its metrics in formats other tools open —
 *   plot.svg, plot.png   one panel per metric group (src/eval/run-plots.ts)
 *   tb/                  TensorBoard event files of every scalar (`tensorboard --logdir RUN/tb`)
 *   metrics.csv          the same scalars as one table (only with --format …,csv)
 * `agentrl train` writes plot.svg, plot.png and tb/ at the end of a run; this command rewrites them
 * for any run, finished or still going (a half-written last line of metrics.jsonl is skipped).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { readMetricsRows, writeRunPlots, type PlotFormat } from '../eval/run-plots.ts';
import { metricsCsv, writeTensorBoard } from '../eval/tensorboard.ts';

export const EXPORT_FORMATS = ['svg', 'png', 'tensorboard', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const DEFAULT_FORMATS: ExportFormat[] = ['svg', 'png', 'tensorboard'];

export function parseFormats(v: string): ExportFormat[] {
  const fs = v.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = fs.filter((f) => !(EXPORT_FORMATS as readonly string[]).includes(f));
  if (bad.length > 0 || fs.length === 0) throw new InvalidArgumentError(`unknown format ${bad.map((b) => `'${b}'`).join(', ') || '(none given)'}; use a comma-separated list of ${EXPORT_FORMATS.join(', ')}`);
  return [...new Set(fs)] as ExportFormat[];
}

export interface PlotRunOptions {
  /** Output directory (default: the run directory). */
  outDir?: string;
  formats?: ExportFormat[];
  warn?: (msg: string) => void;
}

/** Write the run's figure and metric exports; returns the paths written (tb/'s event files one by one). */
export function plotRun(runDir: string, o: PlotRunOptions = {}): string[] {
  const formats = o.formats ?? DEFAULT_FORMATS;
  const outDir = o.outDir ?? runDir;
  // Warn once per run directory, not once per format.
  let warned = false;
  const warn = (msg: string) => {
    if (!warned) (o.warn ?? console.warn)(msg);
    warned = true;
  };
  const written: string[] = [];
  const images = formats.filter((f): f is PlotFormat => f === 'svg' || f === 'png');
  if (images.length > 0) written.push(...writeRunPlots(runDir, { outDir, formats: images, warn }));
  if (formats.includes('tensorboard')) written.push(...writeTensorBoard(runDir, { outDir: join(outDir, 'tb'), warn }));
  if (formats.includes('csv')) {
    const path = join(outDir, 'metrics.csv');
    writeFileSync(path, metricsCsv(readMetricsRows(join(runDir, 'metrics.jsonl'), warn)));
    written.push(path);
  }
  return written;
}

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .description('Plot a run directory (plot.svg and plot.png: reward and per-episode reward, win rate per opponent, loss, KL/entropy, clip fraction, staleness, samples/s, tokens/s) and export its metrics as TensorBoard event files (tb/; `tensorboard --logdir RUN/tb`) or CSV. Works on a run that is still training.')
    .argument('<run>', 'run directory (holding metrics.jsonl)')
    .option('--out <dir>', 'output directory (default: the run directory)')
    .addOption(new Option('--format <list>', `comma-separated: ${EXPORT_FORMATS.join(', ')}`).argParser(parseFormats).default(DEFAULT_FORMATS, DEFAULT_FORMATS.join(',')))
    .action((run: string, o: { out?: string; format: ExportFormat[] }) => {
      const files = plotRun(run, { outDir: o.out, formats: o.format });
      console.log(files.length > 0 ? `wrote ${files.join(', ')}` : `${join(run, 'metrics.jsonl')} has no steps yet: nothing to plot`);
    });
}
