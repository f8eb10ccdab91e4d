import type { JSX } from 'preact';
import { useMemo } from 'preact/hooks';

/** A line diff of two JSON values (keys sorted, so only real changes show), with context folding. */

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

export const stableJson = (value: unknown): string =>
  value === undefined || value === null ? '' : JSON.stringify(sortKeys(value), null, 2);

export interface DiffLine {
  op: ' ' | '+' | '-';
  text: string;
}

const MAX_CELLS = 2_500_000;

export function diffLines(a: string[], b: string[]): DiffLine[] {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const head: DiffLine[] = a.slice(0, start).map((text) => ({ op: ' ', text }));
  const tail: DiffLine[] = a.slice(endA).map((text) => ({ op: ' ', text }));
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const n = midA.length;
  const m = midB.length;
  const middle: DiffLine[] = [];
  if (n * m > MAX_CELLS) {
    for (const text of midA) middle.push({ op: '-', text });
    for (const text of midB) middle.push({ op: '+', text });
  } else {
    // LCS table from the end, so the walk below goes forwards
    const w = m + 1;
    const table = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        table[i * w + j] =
          midA[i] === midB[j] ? table[(i + 1) * w + j + 1]! + 1 : Math.max(table[(i + 1) * w + j]!, table[i * w + j + 1]!);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (midA[i] === midB[j]) {
        middle.push({ op: ' ', text: midA[i]! });
        i++;
        j++;
      } else if (table[(i + 1) * w + j]! >= table[i * w + j + 1]!) middle.push({ op: '-', text: midA[i++]! });
      else middle.push({ op: '+', text: midB[j++]! });
    }
    while (i < n) middle.push({ op: '-', text: midA[i++]! });
    while (j < m) middle.push({ op: '+', text: midB[j++]! });
  }
  return [...head, ...middle, ...tail];
}

export function JsonDiff(props: { before: unknown; after: unknown; context?: number; testid?: string; emptyText?: string }) {
  const context = props.context ?? 4;
  const { lines, added, removed } = useMemo(() => {
    const a = stableJson(props.before);
    const b = stableJson(props.after);
    const lines = diffLines(a ? a.split('\n') : [], b ? b.split('\n') : []);
    return { lines, added: lines.filter((l) => l.op === '+').length, removed: lines.filter((l) => l.op === '-').length };
  }, [props.before, props.after]);

  if (added === 0 && removed === 0) {
    return (
      <div class="diff diff-same" data-testid={props.testid}>
        {props.emptyText ?? 'No change.'}
      </div>
    );
  }
  // fold long runs of unchanged lines
  const keep = new Uint8Array(lines.length);
  lines.forEach((l, i) => {
    if (l.op !== ' ') for (let k = Math.max(0, i - context); k <= Math.min(lines.length - 1, i + context); k++) keep[k] = 1;
  });
  const rows: JSX.Element[] = [];
  let folded = 0;
  lines.forEach((l, i) => {
    if (!keep[i]) {
      folded++;
      return;
    }
    if (folded > 0) {
      rows.push(
        <div class="diff-fold" key={`f${i}`}>
          ⋯ {folded} unchanged line{folded === 1 ? '' : 's'}
        </div>,
      );
      folded = 0;
    }
    rows.push(
      <div class={`diff-line diff-${l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'ctx'}`} key={i}>
        <span class="diff-op">{l.op}</span>
        {l.text}
      </div>,
    );
  });
  if (folded > 0)
    rows.push(
      <div class="diff-fold" key="fend">
        ⋯ {folded} unchanged line{folded === 1 ? '' : 's'}
      </div>,
    );
  return (
    <div class="diff" data-testid={props.testid}>
      <div class="diff-stat">
        <span class="diff-stat-add">+{added}</span> <span class="diff-stat-del">−{removed}</span>
      </div>
      <pre>{rows}</pre>
    </div>
  );
}
