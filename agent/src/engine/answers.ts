import { type Answer, type AnswerReason } from './types.js';

/** An HTTP answer as a rule writes it (defaults already applied by the schema). */
export interface HttpAnswerSpec {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const encoder = new TextEncoder();

/**
 * Builds the answer a rule gives for one reason, once when rules are applied: the rule's headers in
 * their order, then `x-steward-reason`, `x-steward-rule` and the default content-type unless the
 * rule sets them (docs/rules.md "Answers"). Frozen, because one object answers every such call.
 */
export function buildAnswer(
  reason: AnswerReason,
  ruleId: string,
  http: HttpAnswerSpec,
  rpcMessage: string | undefined,
  rpcValue: unknown,
): Answer {
  const headers: (readonly [string, string])[] = Object.entries(http.headers).map(([name, value]) =>
    Object.freeze([name, value]),
  );
  const has = (name: string) => Object.prototype.hasOwnProperty.call(http.headers, name);
  if (!has('x-steward-reason')) headers.push(Object.freeze(['x-steward-reason', reason]));
  if (!has('x-steward-rule')) headers.push(Object.freeze(['x-steward-rule', ruleId]));
  if (http.body !== '' && !has('content-type')) headers.push(Object.freeze(['content-type', 'text/plain; charset=utf-8']));
  return Object.freeze({
    kind: 'answer',
    reason,
    ruleId,
    status: http.status,
    headers: Object.freeze(headers),
    body: encoder.encode(http.body),
    rpcMessage,
    rpcValue: deepFrozenCopy(rpcValue),
  });
}

/**
 * The fallback value is handed to every degraded Dubbo call: a frozen copy, so a consumer that
 * mutates its result cannot change the next call's answer (or the rule it came from).
 */
function deepFrozenCopy(value: unknown): unknown {
  if (value === undefined) return undefined;
  return JSON.parse(JSON.stringify(value), (_key, v: unknown) => (typeof v === 'object' && v !== null ? Object.freeze(v) : v));
}
