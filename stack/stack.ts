/**
 * Command line for the local stack.
 *
 *   tsx stack/stack.ts up [service…]      install (cached) and start; harmless when already up
 *   tsx stack/stack.ts down [service…]    stop what this stack started, nothing else
 *   tsx stack/stack.ts status             state, pid, memory and a protocol answer per service
 *   tsx stack/stack.ts env                the server's environment for this stack (shell syntax)
 *
 * Services: zookeeper, kafka, eureka, mongodb. Ports: STACK_<SERVICE>_PORT (and
 * STACK_KAFKA_CONTROLLER_PORT); folders: STACK_DIR, STEWARD_CACHE_DIR.
 */
import { defaultOptions, LocalStack, SERVICE_NAMES, serverEnv, type ServiceName } from './local-stack.js';

function parseServices(args: string[]): ServiceName[] {
  const unknown = args.filter((a) => !(SERVICE_NAMES as readonly string[]).includes(a));
  if (unknown.length > 0) throw new Error(`unknown service(s): ${unknown.join(', ')} (known: ${SERVICE_NAMES.join(', ')})`);
  return args.length > 0 ? (args as ServiceName[]) : [...SERVICE_NAMES];
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const stack = new LocalStack(defaultOptions((line) => console.log(`[stack] ${line}`)));
  const services = parseServices(rest);
  switch (command) {
    case 'up': {
      const started = Date.now();
      await stack.up(services);
      console.log(`[stack] ready in ${((Date.now() - started) / 1000).toFixed(1)} s; data and logs in ${stack.options.stackDir}`);
      return 0;
    }
    case 'down':
      await stack.down(services);
      return 0;
    case 'status': {
      const statuses = await stack.status(services);
      for (const s of statuses) {
        const facts = [
          s.pid !== undefined ? `pid ${s.pid}` : undefined,
          s.rssMiB !== undefined ? `rss ${s.rssMiB} MiB` : undefined,
          s.details ? JSON.stringify(s.details) : undefined,
          s.error,
        ].filter(Boolean);
        console.log(`${s.name.padEnd(10)} ${s.state.padEnd(10)} 127.0.0.1:${String(s.port).padEnd(6)} ${facts.join('  ')}`);
      }
      return statuses.every((s) => s.state === 'up') ? 0 : 3;
    }
    case 'env':
      for (const [key, value] of Object.entries(serverEnv(stack.options.ports))) console.log(`export ${key}='${value}'`);
      return 0;
    default:
      console.error('usage: stack.ts up|down|status|env [zookeeper|kafka|eureka|mongodb …]');
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`[stack] ${(error as Error).message}`);
    process.exit(1);
  },
);
