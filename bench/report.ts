import { readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

export const machine = (): string =>
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;

export const BENCHMARKS_DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));

/** Replaces (or appends) one benchmark's section of docs/benchmarks.md, between its markers. */
export async function writeSection(name: string, lines: string[]): Promise<void> {
  const section = [`<!-- ${name}:start -->`, ...lines, `<!-- ${name}:end -->`].join('\n');
  const marked = new RegExp(`<!-- ${name}:start -->[\\s\\S]*<!-- ${name}:end -->`);
  let doc = await readFile(BENCHMARKS_DOC, 'utf8').catch(
    () => '# Benchmarks\n\nFigures measured by the scripts in `bench/`; each section says how to reproduce it.\n',
  );
  doc = marked.test(doc) ? doc.replace(marked, section) : `${doc.trimEnd()}\n\n${section}\n`;
  await writeFile(BENCHMARKS_DOC, doc);
  console.log(`written to ${BENCHMARKS_DOC}`);
}

/**
 * A timed client of a Steward server's REST API: every call's round trip in ms, the response's
 * size, and its JSON body; a non-2xx answer throws with the status and the start of the body.
 */
export function timedApi(base: string, token: string) {
  return async <T = unknown>(path: string, init: RequestInit = {}): Promise<{ ms: number; bytes: number; body: T }> => {
    const started = performance.now();
    const res = await fetch(`${base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers },
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${text.slice(0, 300)}`);
    return { ms: performance.now() - started, bytes: Buffer.byteLength(text), body: JSON.parse(text) as T };
  };
}

/** The push benchmarks' one rule: an inbound qps limit on the whole application (each round changes its permits). */
export const limitRule = (permitsPerSec: number) => ({
  kind: 'limit',
  target: { direction: 'inbound', resource: { type: 'application' } },
  limit: { mode: 'qps', permitsPerSec },
});

/** Creates the application's limit rule through `api`: its id, and the revision that made it. */
export async function createLimitRule(
  api: ReturnType<typeof timedApi>,
  application: string,
): Promise<{ ruleId: string; revision: number }> {
  const created = await api<{ revision: number; rule: { id: string } }>(`/api/applications/${application}/rules`, {
    method: 'POST',
    body: JSON.stringify({ rule: limitRule(100), reason: 'bench' }),
  });
  return { ruleId: created.body.rule.id, revision: created.body.revision };
}
