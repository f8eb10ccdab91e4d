import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built server as an operator runs it. */
export const SERVER_MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
/** The agent's preload entry, as an application loads it. */
export const AGENT_REGISTER = fileURLToPath(new URL('../../agent/register.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  child: ChildProcess;
  exited: Promise<Exit>;
  output(): { stdout: string; stderr: string };
  /** Resolves with the first stdout line that parses as JSON and satisfies `match`. */
  line<T>(match: (value: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<T>;
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

const running = new Set<ChildProcess>();

/** A Node child process with a minimal environment; every one is killed by `killAll()`. */
export function startNode(args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'pipe' });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    exited,
    output: () => ({ stdout, stderr }),
    line: <T>(match: (value: Record<string, unknown>) => boolean, timeoutMs = 20_000) =>
      new Promise<T>((resolve, reject) => {
        const check = () => {
          for (const text of stdout.split('\n')) {
            try {
              const value = JSON.parse(text) as Record<string, unknown>;
              if (value && typeof value === 'object' && match(value)) return finish(() => resolve(value as T));
            } catch {
              // not a JSON line
            }
          }
        };
        const timer = setTimeout(
          () => finish(() => reject(new Error(`no matching line within ${timeoutMs} ms; stderr: ${stderr.slice(-2_000)}`))),
          timeoutMs,
        );
        const finish = (then: () => void) => {
          clearTimeout(timer);
          child.stdout?.off('data', check);
          then();
        };
        child.stdout?.on('data', check);
        void exited.then(() => finish(() => reject(new Error(`exited before the line; stderr: ${stderr.slice(-2_000)}`))));
        check();
      }),
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
}

export async function waitForHttp(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not answer`);
}

/** Polls `probe` until it returns a value other than undefined. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: Error | undefined;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error : new Error(String(error));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
}
