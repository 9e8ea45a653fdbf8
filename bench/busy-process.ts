/**
 * Another process keeping the cores busy, for measuring the engine beside it: N threads, each
 * computing for `--busy-ms` then sleeping for `--sleep-ms`, until killed.
 *
 *   node --import tsx bench/busy-process.ts --threads 2 --busy-ms 2 --sleep-ms 2 &   # two threads at 50 %
 *   npm run bench:engine -- --quick --no-torch; kill %1
 */
import { Worker } from 'node:worker_threads';
import { Command } from 'commander';
import { positiveInt } from './common.ts';

const opts = new Command()
  .option('--threads <n>', 'busy threads', positiveInt('--threads'), 2)
  .option('--busy-ms <n>', 'milliseconds of computation per cycle', positiveInt('--busy-ms'), 2)
  .option('--sleep-ms <n>', 'milliseconds asleep per cycle', positiveInt('--sleep-ms'), 2)
  .parse()
  .opts<{ threads: number; busyMs: number; sleepMs: number }>();

const code = `
  const { workerData: { busyMs, sleepMs } } = require('node:worker_threads');
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const t = performance.now();
    let x = 0;
    while (performance.now() - t < busyMs) x += Math.sqrt(x + 1);
    Atomics.wait(nap, 0, 0, sleepMs);
  }`;
for (let i = 0; i < opts.threads; i++) new Worker(code, { eval: true, workerData: { busyMs: opts.busyMs, sleepMs: opts.sleepMs } });
console.log(`busy-process: ${opts.threads} thread(s), ${opts.busyMs} ms busy / ${opts.sleepMs} ms asleep (pid ${process.pid})`);
