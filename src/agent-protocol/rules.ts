import { z } from 'zod';
import { compilePathPattern, compileValidPattern, PATH_PATTERN_MAX_LENGTH } from './path-pattern.js';

/**
 * Limit, breaker and degrade rules: the one schema the server checks every write with and the
 * agents (Node now, Java later) check every push with, so the server never stores a rule an agent
 * would refuse. Field names are the JSON names on the wire, units are in the names (`Ms`, `Sec`,
 * `PerSec`, `Bytes`), and every default is applied here so an agent reads a complete rule.
 * docs/rules.md says what each field means at run time.
 */

/** Bumped when a rule's JSON shape or meaning changes; agents announce the version they implement. */
export const RULE_SCHEMA_VERSION = 1;

/** Size caps, quoted in the error messages and in docs/rules.md. */
export const RULE_CAPS = {
  bodyBytes: 65_536,
  headers: 32,
  headerNameChars: 128,
  headerValueChars: 4_096,
  headersBytes: 16_384,
  jsonDepth: 16,
  jsonNodes: 10_000,
  jsonBytes: 65_536,
  descriptionChars: 1_024,
  rpcMessageChars: 1_024,
  // The whole payload, checked before the schema: a rule nests 3 levels above a fallback value.
  payloadDepth: 24,
  payloadNodes: 20_000,
  payloadChars: 262_144,
} as const;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One field-level problem: `path` is dotted (`limit.permitsPerSec`), empty for the payload itself. */
export interface RuleIssue {
  path: string;
  message: string;
}

export type ParseResult<T> = { ok: true; rule: T } | { ok: false; issues: RuleIssue[] };

// Keys that reach Object.prototype when a naive consumer merges or assigns them; refused anywhere.
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const MAX_ISSUES = 50;

type IssuePath = (string | number)[];

/**
 * Walks a value as JSON, without recursion (hostile nesting cannot exhaust the stack), stopping at
 * the first cap exceeded, so the work is bounded by the caps rather than by the input. Reports keys
 * that could pollute prototypes, nesting, size, and anything JSON cannot carry.
 */
function jsonIssues(
  root: unknown,
  caps: { depth: number; nodes: number; chars: number },
): { path: IssuePath; message: string }[] {
  const issues: { path: IssuePath; message: string }[] = [];
  const stack: { value: unknown; path: IssuePath }[] = [{ value: root, path: [] }];
  let nodes = 1;
  let chars = 0;
  let tooDeep = false;
  while (issues.length < MAX_ISSUES) {
    const item = stack.pop();
    if (!item) break;
    const { value, path } = item;
    if (value === null || typeof value === 'boolean') continue;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) issues.push({ path, message: 'must be a finite number' });
      continue;
    }
    if (typeof value === 'string') {
      chars += value.length;
      if (chars > caps.chars) {
        issues.push({ path: [], message: `must hold at most ${caps.chars} characters of text in all` });
        break;
      }
      continue;
    }
    if (typeof value !== 'object') {
      issues.push({ path, message: `must be JSON (an object, array, string, number, boolean or null), not ${typeof value}` });
      continue;
    }
    if (path.length >= caps.depth) {
      if (!tooDeep) issues.push({ path, message: `must nest at most ${caps.depth} levels of objects and arrays` });
      tooDeep = true;
      continue;
    }
    if (Array.isArray(value)) {
      nodes += value.length;
      if (nodes > caps.nodes) {
        issues.push({ path: [], message: `must hold at most ${caps.nodes} values in all` });
        break;
      }
      for (let i = value.length - 1; i >= 0; i--) {
        const element: unknown = value[i];
        if (element === undefined) issues.push({ path: [...path, i], message: 'must be JSON; an array cannot hold undefined' });
        else stack.push({ value: element, path: [...path, i] });
      }
      continue;
    }
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      issues.push({ path, message: 'must be a plain JSON object' });
      continue;
    }
    const keys = Object.keys(value);
    nodes += keys.length;
    if (nodes > caps.nodes) {
      issues.push({ path: [], message: `must hold at most ${caps.nodes} values in all` });
      break;
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] ?? '';
      chars += key.length;
      if (FORBIDDEN_KEYS.has(key)) {
        issues.push({ path: [...path, key], message: `the key "${key}" is refused anywhere in a rule (prototype pollution)` });
        continue;
      }
      const child: unknown = (value as Record<string, unknown>)[key];
      // An absent optional field in a JavaScript caller's object; JSON has no undefined.
      if (child !== undefined) stack.push({ value: child, path: [...path, key] });
    }
    if (chars > caps.chars) {
      issues.push({ path: [], message: `must hold at most ${caps.chars} characters of text in all` });
      break;
    }
  }
  return issues;
}

// ---- field helpers: one message per field, naming the whole allowed range ------------------------

const requiredOr = (message: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `is required and ${message}` : message;

function integer(min: number, max: number, unit: string, step?: number) {
  const message = `must be an integer from ${min} to ${max}${unit}${step ? `, a multiple of ${step}` : ''}`;
  const schema = z
    .int({ error: requiredOr(message) })
    .min(min, message)
    .max(max, message);
  return step ? schema.multipleOf(step, message) : schema;
}

function ratio() {
  const message = 'must be a number greater than 0 and at most 1 (0.5 is 50 %)';
  return z
    .number({ error: requiredOr(message) })
    .gt(0, message)
    .max(1, message);
}

function flag() {
  return z.boolean({ error: requiredOr('must be true or false') });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: requiredOr(`must be one of: ${values.join(', ')}`) });
}

function text(maxChars: number) {
  const message = `must be a string of at most ${maxChars} characters`;
  return z.string({ error: requiredOr(message) }).max(maxChars, message);
}

/** A strict object: unknown fields are refused, so a typo never silently means "default". */
function strict<S extends z.ZodRawShape>(shape: S) {
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'invalid_type' ? requiredOr('must be an object')(issue) : undefined),
  });
}

/** The discriminator's message lists the choices; a non-object gets the plain type message. */
function choiceError(field: string, values: readonly string[]) {
  return (issue: { code?: string; input?: unknown }) =>
    issue.code === 'invalid_union' ? `${field} must be one of: ${values.join(', ')}` : requiredOr('must be an object')(issue);
}

// ---- names ----------------------------------------------------------------------------------------

const APPLICATION_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const applicationName = () => {
  const message =
    'must be an application name as the catalog shows it: 1 to 128 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit';
  return z.string({ error: requiredOr(message) }).regex(APPLICATION_NAME, message);
};

const JAVA_TYPE_NAME = /^[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*$/;
const JAVA_IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const RULE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

function pattern(regex: RegExp, maxChars: number, message: string) {
  return z
    .string({ error: requiredOr(message) })
    .max(maxChars, message)
    .regex(regex, message);
}

// ---- target ---------------------------------------------------------------------------------------

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const pathPattern = z
  .string({ error: requiredOr('must be a path pattern such as /api/orders/{id} or /api/**') })
  .superRefine((source, ctx) => {
    const compiled = compilePathPattern(source);
    if (!compiled.ok) ctx.addIssue({ code: 'custom', message: compiled.error });
  })
  .meta({
    maxLength: PATH_PATTERN_MAX_LENGTH,
    description:
      'A glob, not a regular expression: literal segments, "*" or "{name}" for one segment, "**" as the last segment for any tail.',
  });

const ApplicationResource = strict({ type: z.literal('application') });
const DubboResource = strict({
  type: z.literal('dubbo'),
  interface: pattern(
    JAVA_TYPE_NAME,
    256,
    'must be a Java interface name such as com.example.OrderService (at most 256 characters)',
  ),
  method: pattern(
    JAVA_IDENTIFIER,
    128,
    'must be a Java method name (at most 128 characters); omit it for every method',
  ).optional(),
});
const HttpResource = strict({
  type: z.literal('http'),
  method: oneOf(HTTP_METHODS).optional(),
  path: pathPattern,
});
const RESOURCE_TYPES = ['application', 'dubbo', 'http'] as const;
const RuleResourceSchema = z.discriminatedUnion('type', [ApplicationResource, DubboResource, HttpResource], {
  error: choiceError('type', RESOURCE_TYPES),
});

export const RuleTargetSchema = z.discriminatedUnion(
  'direction',
  [
    strict({
      direction: z.literal('inbound'),
      caller: applicationName().optional().meta({ description: 'Only calls from this application; absent: every caller.' }),
      resource: RuleResourceSchema,
    }),
    strict({
      direction: z.literal('outbound'),
      callee: applicationName().meta({ description: 'The application called.' }),
      resource: RuleResourceSchema,
    }),
  ],
  { error: choiceError('direction', ['inbound', 'outbound']) },
);

export type RuleTarget = z.output<typeof RuleTargetSchema>;
export type RuleResource = RuleTarget['resource'];

// ---- answers: what a rejected or degraded call gets ----------------------------------------------

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
// Framing and connection headers belong to the agent's HTTP stack; a rule setting them could
// desynchronise the connection.
const RESERVED_HEADERS = new Set([
  'connection',
  'content-length',
  'host',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Checked on the raw object, not after zod copies it: a record schema silently drops an own
 * `__proto__` key, and a check after the copy would never see it.
 */
function headerIssues(value: unknown, ctx: z.RefinementCtx): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be an object of header name to string value' });
    return;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  const entries = Object.entries(value);
  if (proto !== Object.prototype && proto !== null) {
    ctx.addIssue({ code: 'custom', message: 'must be a plain JSON object' });
    return;
  }
  if (entries.length > RULE_CAPS.headers) {
    ctx.addIssue({ code: 'custom', message: `must have at most ${RULE_CAPS.headers} headers` });
    return;
  }
  let bytes = 0;
  for (const [name, headerValue] of entries) {
    if (FORBIDDEN_KEYS.has(name)) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `the key "${name}" is refused anywhere in a rule (prototype pollution)`,
      });
    } else if (name.length > RULE_CAPS.headerNameChars || !HEADER_NAME.test(name)) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `header names must be lower-case HTTP tokens of 1 to ${RULE_CAPS.headerNameChars} characters (write "retry-after", not "Retry-After")`,
      });
    } else if (RESERVED_HEADERS.has(name)) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `"${name}" is set by the agent's HTTP stack and cannot be configured`,
      });
    }
    if (typeof headerValue !== 'string' || headerValue.length > RULE_CAPS.headerValueChars || !HEADER_VALUE.test(headerValue)) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `header values must be strings of at most ${RULE_CAPS.headerValueChars} printable ASCII characters (no line breaks)`,
      });
    } else {
      bytes += name.length + headerValue.length;
    }
  }
  if (bytes > RULE_CAPS.headersBytes) {
    ctx.addIssue({ code: 'custom', message: `names and values must total at most ${RULE_CAPS.headersBytes} bytes` });
  }
}

const headers = () =>
  z
    .custom<Record<string, string>>()
    .superRefine(headerIssues)
    .default({})
    .meta({
      type: 'object',
      maxProperties: RULE_CAPS.headers,
      propertyNames: { pattern: HEADER_NAME.source, maxLength: RULE_CAPS.headerNameChars },
      additionalProperties: { type: 'string', maxLength: RULE_CAPS.headerValueChars },
      description: 'Response headers: lower-case names; no framing or connection headers.',
    });

const body = () => {
  const message = `must be a string of at most ${RULE_CAPS.bodyBytes} bytes (UTF-8)`;
  return z
    .string({ error: requiredOr(message) })
    .max(RULE_CAPS.bodyBytes, message)
    .refine((s) => Buffer.byteLength(s, 'utf8') <= RULE_CAPS.bodyBytes, message)
    .default('');
};

const httpAnswer = (defaultStatus: number) =>
  strict({
    status: integer(200, 599, ' (an HTTP status)').default(defaultStatus),
    headers: headers(),
    body: body(),
  }).prefault({});

function jsonValueIssues(value: unknown, ctx: z.RefinementCtx): void {
  const issues = jsonIssues(value, { depth: RULE_CAPS.jsonDepth, nodes: RULE_CAPS.jsonNodes, chars: RULE_CAPS.jsonBytes });
  for (const issue of issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  if (issues.length === 0 && Buffer.byteLength(JSON.stringify(value), 'utf8') > RULE_CAPS.jsonBytes) {
    ctx.addIssue({ code: 'custom', message: `must be at most ${RULE_CAPS.jsonBytes} bytes as JSON` });
  }
}

const jsonValue = z
  .custom<JsonValue>()
  .superRefine(jsonValueIssues)
  .default(null)
  .meta({
    description: `Any JSON value, nested at most ${RULE_CAPS.jsonDepth} levels, at most ${RULE_CAPS.jsonBytes} bytes as JSON.`,
  });

const rejection = (defaultStatus: number, defaultMessage: string) =>
  strict({
    http: httpAnswer(defaultStatus),
    rpc: strict({ message: text(RULE_CAPS.rpcMessageChars).min(1, 'must not be empty').default(defaultMessage) }).prefault({}),
  }).prefault({});

// ---- kinds ----------------------------------------------------------------------------------------

const QpsLimit = strict({
  mode: z.literal('qps'),
  permitsPerSec: z
    .number({ error: requiredOr('must be a number from 0.001 to 1000000 (calls per second)') })
    .min(0.001, 'must be a number from 0.001 to 1000000 (calls per second)')
    .max(1_000_000, 'must be a number from 0.001 to 1000000 (calls per second)'),
  burst: integer(1, 1_000_000, ' (calls)')
    .optional()
    .meta({ description: 'Bucket size. Default: 1 with queue, else max(1, ceil(permitsPerSec)).' }),
  warmUp: strict({
    periodSec: integer(1, 3_600, ' (seconds)').default(10),
    coldFactor: z
      .number({ error: requiredOr('must be a number greater than 1 and at most 10') })
      .gt(1, 'must be a number greater than 1 and at most 10')
      .max(10, 'must be a number greater than 1 and at most 10')
      .default(3),
  }).optional(),
  queue: strict({ maxWaitMs: integer(1, 30_000, ' (ms)').default(500) }).optional(),
  perCaller: flag().default(false),
}).transform(({ mode, permitsPerSec, burst, ...rest }) => ({
  mode,
  permitsPerSec,
  // Pacing (queue) admits calls one interval apart, so its natural bucket holds one call; without
  // a queue the bucket holds one second's worth.
  burst: burst ?? (rest.queue ? 1 : Math.max(1, Math.ceil(permitsPerSec))),
  ...rest,
}));

const ConcurrencyLimit = strict({
  mode: z.literal('concurrency'),
  maxConcurrent: integer(1, 100_000, ' (calls in flight)'),
  perCaller: flag().default(false),
});

const breakerCommon = {
  windowMs: integer(100, 3_600_000, ' (ms)', 10).default(1_000),
  minCalls: integer(1, 100_000, ' (calls)').default(5),
  openMs: integer(100, 3_600_000, ' (ms)').default(10_000),
  probes: integer(1, 100, ' (calls)').default(1),
};

const BREAKER_STRATEGIES = ['errorRatio', 'slowCallRatio', 'errorCount'] as const;
const BreakerSpec = z.discriminatedUnion(
  'strategy',
  [
    strict({ strategy: z.literal('errorRatio'), threshold: ratio(), ...breakerCommon }),
    strict({
      strategy: z.literal('slowCallRatio'),
      threshold: ratio().default(1),
      slowCallMs: integer(1, 600_000, ' (ms)'),
      ...breakerCommon,
    }),
    strict({ strategy: z.literal('errorCount'), threshold: integer(1, 1_000_000, ' (errors)'), ...breakerCommon }),
  ],
  { error: choiceError('strategy', BREAKER_STRATEGIES) },
);

const common = {
  application: applicationName().meta({ description: 'The application whose agent enforces the rule.' }),
  enabled: flag().default(true),
  description: text(RULE_CAPS.descriptionChars).optional(),
  target: RuleTargetSchema,
};

const LimitRule = strict({
  kind: z.literal('limit'),
  ...common,
  limit: z.discriminatedUnion('mode', [QpsLimit, ConcurrencyLimit], { error: choiceError('mode', ['qps', 'concurrency']) }),
  rejection: rejection(429, 'steward: rate limited'),
});

const BreakerRule = strict({
  kind: z.literal('breaker'),
  ...common,
  breaker: BreakerSpec,
  rejection: rejection(503, 'steward: circuit breaker open'),
});

const DegradeRule = strict({
  kind: z.literal('degrade'),
  ...common,
  force: flag().default(false).meta({ description: 'Degrade on purpose: every matching call gets the fallback, none is made.' }),
  fallback: strict({
    http: httpAnswer(200),
    rpc: strict({ value: jsonValue }).prefault({}),
  }).prefault({}),
});

const RULE_KINDS = ['limit', 'breaker', 'degrade'] as const;

/** Cross-field rules the per-field schemas cannot express. */
function crossFieldIssues(
  rule: z.output<typeof LimitRule | typeof BreakerRule | typeof DegradeRule>,
  ctx: z.RefinementCtx,
): void {
  if (rule.kind === 'limit' && rule.limit.perCaller) {
    if (rule.target.direction === 'outbound') {
      ctx.addIssue({
        code: 'custom',
        path: ['limit', 'perCaller'],
        message: 'applies to inbound targets only (an outbound call has one caller: the application itself)',
      });
    } else if (rule.target.caller !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['limit', 'perCaller'],
        message: 'cannot be combined with target.caller (the rule already counts one caller)',
      });
    }
  }
}

/** What a write carries: everything but the server-assigned id. Defaults applied on output. */
export const RuleInputSchema = z
  .discriminatedUnion('kind', [LimitRule, BreakerRule, DegradeRule], { error: choiceError('kind', RULE_KINDS) })
  .superRefine(crossFieldIssues);

const id = pattern(RULE_ID, 64, 'must be a rule id: 1 to 64 letters, digits, "_" or "-", starting with a letter or digit');

/** A stored rule, as agents receive it: the input plus its id. */
export const RuleSchema = z
  .discriminatedUnion('kind', [LimitRule.safeExtend({ id }), BreakerRule.safeExtend({ id }), DegradeRule.safeExtend({ id })], {
    error: choiceError('kind', RULE_KINDS),
  })
  .superRefine(crossFieldIssues);

export type RuleInput = z.output<typeof RuleInputSchema>;
export type Rule = z.output<typeof RuleSchema>;
export type RuleKind = Rule['kind'];

// ---- parsing --------------------------------------------------------------------------------------

function issuePath(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

function fromZod(error: z.ZodError): RuleIssue[] {
  const seen = new Set<string>();
  const out: RuleIssue[] = [];
  const add = (path: string, message: string) => {
    const key = `${path}\u0000${message}`;
    if (!seen.has(key) && out.length < MAX_ISSUES) {
      seen.add(key);
      out.push({ path, message });
    }
  };
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add(issuePath([...issue.path, key]), 'is not a field here (unknown fields are refused)');
    } else {
      add(issuePath(issue.path), issue.message);
    }
  }
  return out;
}

function parseWith<S extends z.ZodType>(schema: S, raw: unknown): ParseResult<z.output<S>> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, issues: [{ path: '', message: 'must be a JSON object (one rule)' }] };
  }
  // Hostile shapes are refused here, in bounded time, before the schema walks anything.
  const early = jsonIssues(raw, { depth: RULE_CAPS.payloadDepth, nodes: RULE_CAPS.payloadNodes, chars: RULE_CAPS.payloadChars });
  if (early.length > 0) return { ok: false, issues: early.map((i) => ({ path: issuePath(i.path), message: i.message })) };
  const parsed = schema.safeParse(raw);
  return parsed.success ? { ok: true, rule: parsed.data } : { ok: false, issues: fromZod(parsed.error) };
}

/**
 * Checks a rule with its id: the server's gate for every write (the id assigned, then checked with
 * everything else) and what an agent runs on every rule it is pushed.
 */
export function parseRule(raw: unknown): ParseResult<Rule> {
  return parseWith(RuleSchema, raw);
}

/** Checks a rule as a client writes it, without the server-assigned id. */
export function parseRuleInput(raw: unknown): ParseResult<RuleInput> {
  return parseWith(RuleInputSchema, raw);
}

// ---- keys and documentation -----------------------------------------------------------------------

function resourceKey(resource: RuleResource): string {
  switch (resource.type) {
    case 'application':
      return 'application';
    case 'dubbo':
      return `dubbo|${resource.interface}|${resource.method ?? '*'}`;
    case 'http':
      return `http|${resource.method ?? '*'}|${compileValidPattern(resource.path).canonical}`;
  }
}

/**
 * The canonical target of a rule: `application|direction|caller-or-callee|resource`, e.g.
 * `orders|inbound|*|http|GET|/api/orders/*`. Two rules have one key exactly when they target the
 * same calls (`{id}` and `*` are written alike); `*` in the third place means every caller. No
 * name can contain `|` or `*`, so the key is unambiguous.
 */
export function ruleTargetKey(rule: { application: string; target: RuleTarget }): string {
  const { target } = rule;
  const remote = target.direction === 'inbound' ? (target.caller ?? '*') : target.callee;
  return `${rule.application}|${target.direction}|${remote}|${resourceKey(target.resource)}`;
}

/** JSON Schema (draft 2020-12) of a write (`input`) or a stored rule, for OpenAPI. */
export function ruleJsonSchema(variant: 'input' | 'stored' = 'input') {
  return z.toJSONSchema(variant === 'input' ? RuleInputSchema : RuleSchema, { io: 'input', unrepresentable: 'any' });
}
