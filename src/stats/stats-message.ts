import { z } from 'zod';
import { HelloSchema, RecordsSchema, StatsSchema } from '../agent-protocol/messages.js';
import type { CallRecordDoc } from './stats-store.js';
import { type FactDoc, MINUTE, windowStart } from './rollup.js';

/**
 * The value of a message on the stats topic (the contract with `stats-ingest.ts`), checked again on
 * the consuming side: the topic is a boundary, and whatever else writes to it must not be able to
 * poison the rollups. Unknown top-level fields are tolerated (a newer producer); the frame itself
 * is checked with the agent protocol's strict schemas.
 */
export const StatsMessageSchema = z.object({
  v: z.literal(1),
  application: HelloSchema.shape.application,
  instanceId: HelloSchema.shape.instanceId,
  /** The agent process (`hello.run`): frame sequences start again at 1 in each run of an instance. */
  run: HelloSchema.shape.run,
  receivedAt: z.number().int().min(0),
  frame: z.discriminatedUnion('type', [StatsSchema, RecordsSchema]),
});

export type StatsMessageValue = z.output<typeof StatsMessageSchema>;

export type ParsedMessage = { ok: true; message: StatsMessageValue } | { ok: false; reason: string };

export function parseStatsMessage(value: Buffer | string | null | undefined): ParsedMessage {
  if (value === null || value === undefined) return { ok: false, reason: 'empty message' };
  let json: unknown;
  try {
    json = JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = StatsMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, reason: issue ? `${issue.path.join('.') || '(message)'}: ${issue.message}` : 'invalid' };
  }
  return { ok: true, message: parsed.data };
}

/**
 * The idempotency key of a stats frame: one per (agent run, seq), whatever delivers it how often.
 * The run, not the instance id: an instance id may be configured and outlive a process, whose
 * sequences start again at 1.
 */
export function factId(run: string, seq: number): string {
  return `${run}:s:${seq}`;
}

/** The idempotency key of one call record: (agent run, records seq, position in the frame). */
export function recordId(run: string, seq: number, index: number): string {
  return `${run}:r:${seq}:${index}`;
}

export function toFact(message: StatsMessageValue & { frame: { type: 'stats' } }): FactDoc {
  const { frame } = message;
  return {
    _id: factId(message.run, frame.seq),
    application: message.application,
    instanceId: message.instanceId,
    seq: frame.seq,
    second: frame.second,
    minute: windowStart(frame.second, MINUTE),
    receivedAt: message.receivedAt,
    dropped: frame.dropped,
    entries: frame.entries,
  };
}

export function toRecords(message: StatsMessageValue & { frame: { type: 'records' } }): CallRecordDoc[] {
  const { frame } = message;
  return frame.records.map((record, index) => ({
    _id: recordId(message.run, frame.seq, index),
    application: message.application,
    instanceId: message.instanceId,
    ...record,
  }));
}
