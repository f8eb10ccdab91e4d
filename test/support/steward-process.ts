import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN } from './app.js';
import { type Child, SERVER_MAIN, startNode, waitForHttp } from './processes.js';
import { stackEnv } from './stack.js';

/**
 * The built server in its own process (so a test can kill it), on `port`, against the local stack; resolves once it answers.
 * `STEWARD_MAIN` in the test's environment names another build of the server (default dist/main.js).
 */
export async function startStewardProcess(port: number, env: Record<string, string> = {}, timeoutMs = 20_000): Promise<Child> {
  const child = startNode([process.env.STEWARD_MAIN ?? SERVER_MAIN], {
    ...stackEnv,
    PORT: String(port),
    ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    ...env,
  });
  await waitForHttp(`http://127.0.0.1:${port}/livez`, timeoutMs);
  return child;
}

/** The built stats aggregator as its own process (`npm run stats:aggregator`). */
export const AGGREGATOR_MAIN = fileURLToPath(new URL('../../dist/stats/aggregator-main.js', import.meta.url));

/**
 * The built stats aggregator in its own process, against the local stack (with `env` on top, e.g.
 * STATS_TOPIC); resolves once it joined its consumer group, which after a member was killed waits
 * for that member's session to time out (30 s).
 */
export async function startStatsAggregatorProcess(env: Record<string, string> = {}, timeoutMs = 90_000): Promise<Child> {
  const child = startNode([AGGREGATOR_MAIN], { ...stackEnv, LOG_LEVEL: 'info', ...env });
  await child.line((line) => line['msg'] === 'stats aggregator joined its consumer group', timeoutMs);
  return child;
}
