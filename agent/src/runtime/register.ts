import { Agent, HANDLE, inertHandle, type AgentHandle } from './agent.js';
import { readConfig } from './config.js';
import { errorText, Logger } from './log.js';

/**
 * The preload entry (`node --require @steward/agent/register` or `node --import`): reads the
 * configuration, enforces the saved rules, guards Node's HTTP stack and connects to the server.
 * It never throws into the application: a misconfigured agent warns once and stays inert, and a
 * second copy loaded into the same process leaves the first one alone.
 */
function register(): void {
  const global = globalThis as { [HANDLE]?: AgentHandle };
  if (global[HANDLE] !== undefined) return;
  const read = readConfig(process.env);
  if (!read.ok) {
    global[HANDLE] = inertHandle(read.reason);
    if (!read.disabled) new Logger().warn(`not started: ${read.reason}. The application runs without Steward.`);
    return;
  }
  const agent = new Agent(read.config, new Logger(read.config.logLevel));
  global[HANDLE] = agent.handle();
  agent.start();
}

try {
  register();
} catch (error) {
  new Logger().error(`not started: ${errorText(error)}. The application runs without Steward.`);
}
