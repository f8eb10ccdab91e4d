/**
 * The benchmark's side of a worker process of simulated agents (bench/agent-fanout.ts with
 * bench/agent-fanout-client.ts, bench/stats-ingest.ts with bench/stats-agents-client.ts): the
 * worker's latest `progress` message, and `report`s asked for by id, over IPC.
 */
import type { ChildProcess } from 'node:child_process';

export class AgentWorker<
  Command extends object,
  Progress extends { type: 'progress' },
  Report extends { type: 'report'; id: number },
> {
  progress?: Progress;
  private readonly waiting = new Map<number, (report: Report) => void>();
  private nextId = 0;

  /** `stopping`: whether the benchmark is stopping its processes (an exit is logged otherwise). */
  constructor(
    readonly child: ChildProcess,
    stopping: () => boolean,
  ) {
    child.on('message', (message: Progress | Report) => {
      if (message.type === 'progress') this.progress = message;
      else this.waiting.get(message.id)?.(message);
    });
    child.once('exit', (code, signal) => {
      if (!stopping()) console.error(`worker ${child.pid} exited (${code ?? signal})`);
    });
  }

  command(command: Command): void {
    this.child.send(command);
  }

  /** Sends the command `ask(id)` for a new report id; resolves with that report, or rejects after `timeoutMs`. */
  protected request(ask: (id: number) => Command, timeoutMs: number): Promise<Report> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${this.child.pid} did not report`)), timeoutMs);
      this.waiting.set(id, (report) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(report);
      });
      this.command(ask(id));
    });
  }
}

/** Tells the workers still running to stop (their agents disconnect); kills any still running 1.5 s later. */
export async function stopWorkers(
  workers: readonly { child: ChildProcess; command(command: { type: 'stop' }): void }[],
): Promise<void> {
  const running = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
  for (const worker of running) if (worker.child.connected) worker.command({ type: 'stop' });
  await new Promise((resolve) => setTimeout(resolve, running.length > 0 ? 1_500 : 0));
  for (const worker of running) if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
}
