import { existsSync } from 'node:fs';
import { stack } from '../support/stack.js';

/** Brings the real stack up (a no-op when it already is) before any integration test runs. */
export default async function setup(): Promise<void> {
  if (!existsSync(new URL('../../dist/main.js', import.meta.url))) {
    throw new Error('dist/main.js is missing: run `npm run build` first (npm test does)');
  }
  await stack.up();
}
