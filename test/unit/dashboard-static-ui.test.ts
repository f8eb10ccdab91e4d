import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/app-config.js';
import { defaultWebRoot, isServerPath, webRootOf } from '../../src/dashboard/static-ui.js';

const required = { MONGODB_URI: 'mongodb://127.0.0.1:27017/steward', KAFKA_BROKERS: '127.0.0.1:9092' };
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const configOf = (env: Record<string, string>) => {
  const parsed = parseConfig({ ...required, ...env });
  if (!parsed.ok) throw new Error(parsed.errors.join('; '));
  return parsed.config;
};

describe('the dashboard’s static root and server paths', () => {
  it('serves dist/web of this installation unless WEB_ROOT names another folder', () => {
    expect(defaultWebRoot()).toBe(resolve(ROOT, 'dist', 'web'));
    expect(configOf({}).web).toBeUndefined();
    expect(webRootOf(configOf({}))).toBe(resolve(ROOT, 'dist', 'web'));
    expect(webRootOf(configOf({ WEB_ROOT: ' /srv/steward/web ' }))).toBe('/srv/steward/web');
    expect(webRootOf(configOf({ WEB_ROOT: 'build/ui' }))).toBe(resolve(process.cwd(), 'build/ui'));
    expect(webRootOf(configOf({ WEB_ROOT: '' }))).toBe(resolve(ROOT, 'dist', 'web'));
  });

  it('leaves the API, the docs, the probes, the metrics and socket.io to the server', () => {
    for (const path of ['/api', '/api/me', '/docs', '/docs/openapi.json', '/metrics', '/livez', '/readyz', '/socket.io/']) {
      expect(isServerPath(path), path).toBe(true);
    }
    for (const path of ['/', '/rules/x', '/apix', '/documents', '/assets/index-1.js', '/applications/api']) {
      expect(isServerPath(path), path).toBe(false);
    }
  });
});
