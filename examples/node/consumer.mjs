// A plain Node HTTP service that calls another one: the preloaded agent guards its outbound
// calls (fetch and http.request) and names itself to the callee.
//   GET /call?path=/api/items/1&client=fetch|http   calls PROVIDER_URL + path, answers what came back
import { request } from 'node:http';
import { createServer } from 'node:http';

const provider = process.env.PROVIDER_URL ?? 'http://127.0.0.1:8081';

function viaHttp(target) {
  return new Promise((resolve) => {
    const req = request(target, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', (error) => resolve({ status: 0, headers: {}, body: String(error) }));
    req.end();
  });
}

async function viaFetch(target) {
  try {
    const res = await fetch(target);
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  } catch (error) {
    return { status: 0, headers: {}, body: String(error) };
  }
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname !== '/call') {
    res.writeHead(404).end();
    return;
  }
  const target = new URL(url.searchParams.get('path') ?? '/', provider).toString();
  const answer = url.searchParams.get('client') === 'http' ? await viaHttp(target) : await viaFetch(target);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      status: answer.status,
      reason: answer.headers['x-steward-reason'] ?? null,
      rule: answer.headers['x-steward-rule'] ?? null,
      body: answer.body,
    }),
  );
});

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
