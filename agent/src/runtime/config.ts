import { randomBytes } from 'node:crypto';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { APPLICATION_NAME } from './names.js';

/** The agent's configuration, read once from the environment when the agent is preloaded. */
export interface AgentConfig {
  serverUrl: string;
  application: string;
  token: string | undefined;
  stateDir: string;
  instanceId: string;
  host: string;
  logLevel: LogLevel;
  /** Carry an inbound request's trace id to the outbound calls it makes (AsyncLocalStorage: costs every async operation). */
  tracePropagation: boolean;
  /** The share of normal calls kept as call records, 0–1. */
  recordSample: number;
  /** Request headers recorded as call records' details, lower-case. */
  recordHeaders: string[];
}

export type ConfigResult = { ok: true; config: AgentConfig } | { ok: false; disabled: boolean; reason: string };

const optional = (schema: z.ZodString) =>
  z.preprocess((value) => (typeof value === 'string' && value.trim() === '' ? undefined : value), schema.optional());

/** STEWARD_RECORD_SAMPLE's default: 1 % of the calls that are neither slow, failed nor blocked. */
export const DEFAULT_RECORD_SAMPLE = 0.01;
const MAX_RECORD_HEADERS = 16;

const EnvSchema = z.object({
  STEWARD_SERVER_URL: z
    .string({ error: 'is required: the Steward server, e.g. http://steward:3000' })
    .trim()
    .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), 'must be an http:// or https:// URL'),
  STEWARD_APPLICATION: z
    .string({ error: 'is required: the application name as the catalog shows it' })
    .trim()
    .transform((value) => value.toLowerCase())
    .pipe(
      z.string().regex(APPLICATION_NAME, 'must be 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit'),
    ),
  STEWARD_AGENT_TOKEN: optional(z.string().trim()),
  STEWARD_STATE_DIR: optional(z.string().trim()),
  STEWARD_INSTANCE_ID: optional(z.string().trim().max(128, 'must be at most 128 characters')),
  STEWARD_HOST: optional(z.string().trim().max(255, 'must be at most 255 characters')),
  STEWARD_LOG: optional(z.string().trim().toLowerCase()).pipe(z.enum(LOG_LEVELS).default('warn')),
  STEWARD_TRACE_PROPAGATION: optional(z.string().trim().toLowerCase()).pipe(z.enum(['true', 'false']).default('false')),
  STEWARD_RECORD_SAMPLE: optional(z.string().trim())
    .pipe(
      z
        .string()
        .refine((value) => /^(\d+(\.\d*)?|\.\d+)%?$/.test(value), 'must be a share from 0 to 1 (0.01) or a percentage (1%)')
        .transform((value) => (value.endsWith('%') ? Number(value.slice(0, -1)) / 100 : Number(value)))
        .pipe(z.number().min(0, 'must be from 0 to 1').max(1, 'must be from 0 to 1 (or 0% to 100%)'))
        .optional(),
    )
    .transform((value) => value ?? DEFAULT_RECORD_SAMPLE),
  STEWARD_RECORD_HEADERS: optional(z.string().trim())
    .transform((value) =>
      (value ?? '')
        .split(',')
        .map((name) => name.trim().toLowerCase())
        .filter((name) => name !== ''),
    )
    .pipe(
      z
        .array(
          z.string().regex(/^[a-z0-9-]{1,64}$/, 'must be header names (letters, digits, "-"; at most 64 each), comma-separated'),
        )
        .max(MAX_RECORD_HEADERS, `must name at most ${MAX_RECORD_HEADERS} headers`),
    )
    .transform((names) => [...new Set(names)]),
});

/** The first non-internal IPv4 address: what other instances most likely reach this one on. */
function defaultHost(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === 'IPv4' && !address.internal) return address.address;
    }
  }
  return '127.0.0.1';
}

/** Reads the configuration; never throws. `disabled` is an explicit STEWARD_AGENT_ENABLED=false. */
export function readConfig(env: NodeJS.ProcessEnv): ConfigResult {
  if (env.STEWARD_AGENT_ENABLED?.trim().toLowerCase() === 'false') {
    return { ok: false, disabled: true, reason: 'STEWARD_AGENT_ENABLED=false' };
  }
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`);
    return { ok: false, disabled: false, reason: problems.join('; ') };
  }
  const e = parsed.data;
  return {
    ok: true,
    config: {
      serverUrl: e.STEWARD_SERVER_URL,
      application: e.STEWARD_APPLICATION,
      token: e.STEWARD_AGENT_TOKEN,
      stateDir: e.STEWARD_STATE_DIR ?? join(tmpdir(), 'steward-agent'),
      instanceId: e.STEWARD_INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`.slice(0, 128),
      host: e.STEWARD_HOST ?? defaultHost(),
      logLevel: e.STEWARD_LOG,
      tracePropagation: e.STEWARD_TRACE_PROPAGATION === 'true',
      recordSample: e.STEWARD_RECORD_SAMPLE,
      recordHeaders: e.STEWARD_RECORD_HEADERS,
    },
  };
}
