import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NextFunction, Request, Response } from 'express';
import type { AppConfig } from '../config/app-config.js';

/** Paths the server answers itself: never a file of the UI, never its index.html. */
const SERVER_PATHS = ['/api', '/docs', '/metrics', '/livez', '/readyz', '/socket.io'];

/** Vite names every file under assets/ by its content hash: a changed file gets a new name. */
const HASHED = { maxAge: 365 * 24 * 3600 * 1000, immutable: true };
/** index.html and unhashed files (favicon…): revalidated each time (ETag), so a deployment shows at once. */
const REVALIDATED = { cacheControl: false, headers: { 'Cache-Control': 'no-cache' } };

const NOT_BUILT = 'The dashboard UI is not built on this server: run `npm run build:web` (or set WEB_ROOT).\n';

export function isServerPath(path: string): boolean {
  return SERVER_PATHS.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
}

/** dist/web of this installation, found from this file so that it does not depend on the working directory. */
export function defaultWebRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'web');
    const parent = dirname(dir);
    if (parent === dir) return resolve('dist', 'web');
    dir = parent;
  }
}

export function webRootOf(config: AppConfig): string {
  return config.web ? resolve(config.web.root) : defaultWebRoot();
}

type SendError = Error & { code?: string; status?: number; statusCode?: number };

const missing = (error: SendError) =>
  error.code === 'ENOENT' || error.code === 'ENOTDIR' || error.code === 'EISDIR' || (error.status ?? error.statusCode) === 404;

/**
 * Serves the dashboard's built front end (docs/dashboard.md): the files under `root`, and
 * index.html for `/` and for any other GET that asks for HTML, so the UI's own routes
 * (`/rules/orders`) survive a reload. Server paths pass through untouched, so an unknown
 * `/api/...` still gets the API's JSON 404. Files are sent by Express's `res.sendFile` (ETag,
 * conditional GET, ranges, no `..` or dotfiles): no other dependency. The root is looked at on
 * every request: a UI built after the server started is served without a restart, and a missing
 * one is a 503 that says how to build it, not an error.
 */
export function dashboardUi(root: string, warn: (message: string) => void) {
  let warned = false;

  const sendIndex = (res: Response) =>
    res.sendFile('index.html', { root, ...REVALIDATED }, (error?: SendError) => {
      if (!error) warned = false;
      if (!error || res.headersSent) return;
      if (!missing(error)) {
        res.sendStatus(error.status ?? 500);
        return;
      }
      if (!warned) warn(`dashboard UI not found: ${join(root, 'index.html')} does not exist (npm run build:web)`);
      warned = true;
      res.status(503).type('text/plain').set('Cache-Control', 'no-store').send(NOT_BUILT);
    });

  return (req: Request, res: Response, next: NextFunction): void => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || isServerPath(req.path)) {
      next();
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(req.path);
    } catch {
      next();
      return;
    }
    if (path === '/' || path === '/index.html') {
      sendIndex(res);
      return;
    }
    const hashed = path.startsWith('/assets/');
    res.sendFile(path, { root, dotfiles: 'ignore', ...(hashed ? HASHED : REVALIDATED) }, (error?: SendError) => {
      if (!error || res.headersSent) return;
      if (!missing(error)) {
        // `..` in the path (403), or the file could not be read.
        res.sendStatus(error.status ?? 500);
        return;
      }
      // A client-side route, when a browser navigates to it; an asset that is not there is a 404.
      if (!hashed && /\btext\/html\b/i.test(req.get('accept') ?? '')) sendIndex(res);
      else next();
    });
  };
}
