import { ADMIN_TOKEN } from './app.js';
import { type Child, SERVER_MAIN, startNode, waitForHttp } from './processes.js';
import { stackEnv } from './stack.js';

/** The built server in its own process (so a test can kill it), on `port`, against the local stack; resolves once it answers. */
export async function startStewardProcess(port: number, env: Record<string, string> = {}): Promise<Child> {
  const child = startNode([SERVER_MAIN], { ...stackEnv, PORT: String(port), ADMIN_TOKEN, LOG_LEVEL: 'warn', ...env });
  await waitForHttp(`http://127.0.0.1:${port}/livez`);
  return child;
}
