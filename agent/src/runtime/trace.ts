import { AsyncLocalStorage } from 'node:async_hooks';
import { randomFillSync } from 'node:crypto';

/**
 * Trace ids: an inbound request keeps the `x-steward-trace` it came with (hex, 16–32 characters) or
 * gets a new one; outbound calls made while handling it carry the same id, so the call records of
 * both sides of a call chain share it. The inbound request's context travels in one
 * AsyncLocalStorage, entered once per request (enterWith, in the request's own async context, so
 * the handler, its promises and timers, and the request body's events all see it).
 */

export const TRACE_HEADER = 'x-steward-trace';

const TRACE_ID = /^[0-9a-f]{16,32}$/;

/** A trace id as CallRecordSchema takes it: lower-case hex, 16–32 characters; upper case is lowered. */
export function validTraceId(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length < 16 || value.length > 32) return undefined;
  const id = value.toLowerCase();
  return TRACE_ID.test(id) ? id : undefined;
}

// Random bytes are drawn 4 KiB at a time: a new id is one slice of a buffer, not a system call.
const random = Buffer.alloc(4_096);
let offset = random.length;

/** A new trace id: 16 hex characters from crypto-strength random bytes. */
export function newTraceId(): string {
  if (offset + 8 > random.length) {
    randomFillSync(random);
    offset = 0;
  }
  const id = random.toString('hex', offset, offset + 8);
  offset += 8;
  return id;
}

/** What an inbound request leaves for the code handling it; the trace id is made when first needed. */
export class RequestContext {
  private id: string | undefined;

  constructor(
    header: unknown,
    /** The inbound request's headers: outbound calls without a detail header of their own take it from here. */
    readonly headers: Readonly<Record<string, string | string[] | undefined>>,
  ) {
    this.id = validTraceId(header);
  }

  get traceId(): string {
    return (this.id ??= newTraceId());
  }
}

const storage = new AsyncLocalStorage<RequestContext>();
/**
 * Off unless STEWARD_TRACE_PROPAGATION=true: on Node 20 the first use of an AsyncLocalStorage
 * installs async hooks that then add work to every promise and callback in the process, a cost
 * the application did not ask for. Without it records still carry trace ids, but an outbound call
 * does not inherit the inbound request's.
 */
let propagation = false;

export function setTracePropagation(on: boolean): void {
  propagation = on;
}

/** Makes `context` the current request context of the running async context and what it starts. */
export function enterRequest(context: RequestContext): void {
  if (propagation) storage.enterWith(context);
}

/** The inbound request being handled, if any. */
export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}
