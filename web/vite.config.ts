import preact from '@preact/preset-vite';
import { defineConfig } from 'vite';

// The dashboard: built into dist/web, which the server serves at `/` (SPA fallback).
// `npm run build:web` from the repository root; `npx vite --config web/vite.config.ts` for a
// dev server that proxies the API and the socket to a Steward server on STEWARD_URL (default :3000).
const here = decodeURIComponent(new URL('.', import.meta.url).pathname);
const target = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env['STEWARD_URL'];
const server = target ?? 'http://localhost:3000';

export default defineConfig({
  root: here,
  base: '/',
  plugins: [preact()],
  build: {
    outDir: `${here}../dist/web`,
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      '/api': server,
      '/docs': server,
      '/socket.io': { target: server, ws: true },
    },
  },
});
