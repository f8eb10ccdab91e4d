import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from '../../src/app.js';
import { parseConfig } from '../../src/config/app-config.js';
import { stackEnv } from './stack.js';

export interface RunningApp {
  app: NestExpressApplication;
  url: string;
  close(): Promise<void>;
}

/** A Steward server in this process, on a free port, configured for the local stack. */
export async function startApp(overrides: Record<string, string> = {}): Promise<RunningApp> {
  const parsed = parseConfig({ LOG_LEVEL: 'warn', ...stackEnv, ...overrides, PORT: '1' });
  if (!parsed.ok) throw new Error(parsed.errors.join('; '));
  const app = await createApp(parsed.config);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${address.port}`, close: () => app.close() };
}
