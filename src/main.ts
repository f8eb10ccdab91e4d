import 'reflect-metadata';
import pino from 'pino';
import { Logger } from 'nestjs-pino';
import { createApp, OPENAPI_UI_PATH } from './app.js';
import { parseConfig } from './config/app-config.js';

async function main(): Promise<void> {
  const parsed = parseConfig(process.env);
  if (!parsed.ok) {
    // Nest is not up yet: log the whole list once, as JSON like every other line, and stop.
    const log = pino({ base: { service: 'steward' } }, pino.destination({ fd: 2, sync: true }));
    log.fatal({ errors: parsed.errors }, `invalid configuration:\n  ${parsed.errors.join('\n  ')}`);
    process.exit(1);
  }
  const { config } = parsed;
  const app = await createApp(config);
  // process.exit(0) after close, rather than re-raising the signal: pino flushes and the exit code is 0.
  app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });

  // A hung dependency must not keep a terminating pod alive forever.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      setTimeout(() => {
        console.error(`shutdown took longer than ${config.shutdown.timeoutMs} ms: exiting`);
        process.exit(1);
      }, config.shutdown.drainMs + config.shutdown.timeoutMs).unref();
    });
  }

  await app.listen(config.http.port, config.http.host);
  const base = `http://${config.http.host}:${config.http.port}`;
  app.get(Logger).log(`Steward listening on ${base} (API docs ${base}/${OPENAPI_UI_PATH})`, 'Bootstrap');
}

main().catch((error: unknown) => {
  console.error('steward failed to start:', error);
  process.exit(1);
});
