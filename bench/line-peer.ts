/**
 * A benchmark peer in a child process (PyTorch, llama.cpp) speaking one JSON line per request line:
 * it first prints {"ready": true, "info": …} (or {"ready": false, "reason": …}), then answers each
 * request with one line, an {"error": …} reply being an error; {"op": "quit"} or EOF ends it.
 * Only lines starting with '{' are replies (libraries may print to stdout).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface LinePeerTimeouts {
  /** How long the peer may take to load and warm up. */
  readyMs: number;
  /** How long one request may take. */
  requestMs: number;
}

export class LinePeer {
  private readonly lines: string[] = [];
  private readonly waiters: ((line: string | null) => void)[] = [];
  private closed = false;
  private stderr = '';
  info: Record<string, unknown> = {};

  private constructor(readonly name: string, private readonly proc: ChildProcess, private readonly timeouts: LinePeerTimeouts) {
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr = (this.stderr + d).slice(-4000); });
    createInterface({ input: proc.stdout! })
      .on('line', (line) => {
        if (!line.startsWith('{')) return;
        const w = this.waiters.shift();
        if (w) w(line); else this.lines.push(line);
      })
      .on('close', () => { this.closed = true; for (const w of this.waiters.splice(0)) w(null); });
    proc.on('error', (err) => { this.stderr += `\n${err.message}`; });
  }

  /** Spawn and wait for ready; not ready or an early exit is an error, worded by `explain` from the peer's stderr. */
  static async start(name: string, cmd: string, args: string[], explain: (stderr: string) => string, timeouts: LinePeerTimeouts): Promise<LinePeer | { error: string }> {
    const peer = new LinePeer(name, spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] }), timeouts);
    const ready = await peer.next(timeouts.readyMs);
    const msg = ready === null ? null : (JSON.parse(ready) as { ready: boolean; reason?: string; info?: Record<string, unknown> });
    if (!msg?.ready) {
      peer.close();
      return { error: msg?.reason ?? explain(peer.stderr.trim()) };
    }
    peer.info = msg.info ?? {};
    return peer;
  }

  private next(timeoutMs: number): Promise<string | null> {
    if (this.lines.length) return Promise.resolve(this.lines.shift()!);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { const i = this.waiters.indexOf(done); if (i >= 0) this.waiters.splice(i, 1); resolve(null); }, timeoutMs);
      const done = (line: string | null) => { clearTimeout(timer); resolve(line); };
      this.waiters.push(done);
    });
  }

  async request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(JSON.stringify(req) + '\n');
    const line = await this.next(this.timeouts.requestMs);
    if (line === null) throw new Error(`${this.name} stopped answering: ${this.stderr.trim().slice(-800)}`);
    const res = JSON.parse(line) as Record<string, unknown> & { error?: string };
    if (res.error) throw new Error(`${this.name}: ${res.error}`);
    return res;
  }

  close(): void {
    if (!this.proc.stdin!.destroyed) this.proc.stdin!.end(JSON.stringify({ op: 'quit' }) + '\n');
    if (this.proc.exitCode === null) setTimeout(() => { if (this.proc.exitCode === null) this.proc.kill(); }, 3000).unref();
  }
}
