/** `agentrl dashboard [RUNS_DIR]`: serve the web dashboard over a run directory or a directory of runs. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { startDashboard } from '../dashboard/server.ts';
import { port } from './option-parsers.ts';
import { untilSignal } from './until-signal.ts';

export interface DashboardCliOptions {
  host: string;
  port: number;
  token?: string;
  open?: boolean;
}

/** Best effort: a desktop's browser (the URL is printed either way). */
function openBrowser(url: string): void {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  const child = spawn(cmd, [url], { detached: true, stdio: 'ignore' });
  child.on('error', () => console.log(`(could not run ${cmd}; open the URL yourself)`));
  child.unref();
}

/** Serve until SIGINT/SIGTERM. */
export async function runDashboard(runsDir: string, o: DashboardCliOptions): Promise<void> {
  const root = resolve(runsDir);
  if (!existsSync(root)) throw new Error(`dashboard: ${root} does not exist (give a run directory, e.g. runs/quickstart, or a directory of runs such as runs/)`);
  const d = await startDashboard({ runsDir: root, host: o.host, port: o.port, token: o.token });
  console.log(`agentrl dashboard: ${root} at ${d.url} — Ctrl-C stops`);
  if (o.open) openBrowser(d.url);
  await untilSignal();
  await d.close();
}

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description('Serve a local web page over training runs: live curves from metrics.jsonl, per-opponent × episode tables, and a trajectory viewer (tokens with their source, behaviour logprob, version, loss mask, rewards and advantages) over the trajectories a run logs (log.trajectories in the run config).')
    .argument('[runs-dir]', 'a run directory or a directory of runs', 'runs')
    .option('--host <host>', 'address to listen on; anything but loopback needs --token', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', port, 8050)
    .option('--token <secret>', 'require this token (open the printed URL once; it becomes a cookie); required off loopback')
    .option('--open', 'open the page in a browser')
    .action(async (runsDir: string, o: DashboardCliOptions) => {
      await runDashboard(runsDir, o);
    });
}
