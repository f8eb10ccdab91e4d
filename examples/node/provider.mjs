// A plain Node HTTP service, no framework and no Steward code: the agent is preloaded
// (node --import <agent>/register.js provider.mjs) and guards its inbound calls.
//   GET  /api/items/:id   an item (fails with 500 while failing mode is on; waits ?delayMs=)
//   POST /admin/failing   {"failing": true|false} switches failing mode
//   GET  /admin/stats     how many /api requests reached this handler
//   POST /admin/reset     zeroes the count
import { createServer } from 'node:http';

const name = process.env.APP_NAME ?? 'provider';
let failing = false;
let served = 0;

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname.startsWith('/api/')) {
    served += 1;
    const delay = Number(url.searchParams.get('delayMs') ?? 0);
    setTimeout(() => {
      if (failing) json(res, 500, { error: 'failing on purpose' });
      else json(res, 200, { from: name, path: url.pathname, caller: req.headers['x-steward-caller'] ?? null });
    }, delay);
    return;
  }
  if (url.pathname === '/admin/stats') return json(res, 200, { served, failing });
  if (url.pathname === '/admin/reset' && req.method === 'POST') {
    served = 0;
    return json(res, 200, { served });
  }
  if (url.pathname === '/admin/failing' && req.method === 'POST') {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      failing = JSON.parse(body || '{}').failing === true;
      json(res, 200, { failing });
    });
    return;
  }
  json(res, 404, { error: 'not found' });
});

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: server.address().port, app: name }));
});
