import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from '../../src/app.js';
import { parseConfig } from '../../src/config/app-config.js';
import { stackEnv } from './stack.js';

/** The bootstrap admin token of every test server. */
export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface RunningApp {
  app: NestExpressApplication;
  url: string;
  close(): Promise<void>;
  /** fetch against the server with a bearer token (the admin's unless another is given). */
  api(path: string, init?: RequestInit & { token?: string | null; json?: unknown }): Promise<Response>;
}

/** A Steward server in this process, on a free port, configured for the local stack. */
export async function startApp(overrides: Record<string, string> = {}): Promise<RunningApp> {
  const parsed = parseConfig({ LOG_LEVEL: 'warn', ADMIN_TOKEN, ...stackEnv, ...overrides, PORT: '1' });
  if (!parsed.ok) throw new Error(parsed.errors.join('; '));
  const app = await createApp(parsed.config);
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  return {
    app,
    url,
    close: () => app.close(),
    api: (path, init = {}) => {
      const { token = ADMIN_TOKEN, json, headers, ...rest } = init;
      return fetch(`${url}${path}`, {
        ...rest,
        headers: {
          ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
          ...(json === undefined ? {} : { 'Content-Type': 'application/json' }),
          ...(headers as Record<string, string> | undefined),
        },
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
      });
    },
  };
}
