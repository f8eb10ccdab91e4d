import { HTTP, type Protocol } from './types.js';

/**
 * The `resource` of a statistics entry (docs/agent-protocol.md "Statistics and call records"):
 * `<METHOD> <path template>` for HTTP, `<interface>#<method>` for Dubbo. Path segments that look
 * like ids are written `{id}`, so `/api/orders/7` and `/api/orders/8` count under one key and the
 * number of keys stays bounded by the application's routes, not by its data.
 */

/** The key of everything that does not fit: over the per-second key cap, the engine's cache, or the length limit. */
export const OTHER_RESOURCE = '(other)';
/** StatsEntrySchema's `resource` limit. */
export const MAX_RESOURCE_CHARS = 600;
/** A segment longer than this is an id whatever it holds (a token, an encoded blob). */
const MAX_SEGMENT_CHARS = 64;

const DIGITS = /^[0-9]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{16,}$/i;

/** Whether a path segment is an id: all digits, a UUID, hex of 16 characters or more, or longer than 64 characters. */
export function isIdSegment(segment: string): boolean {
  return segment.length > MAX_SEGMENT_CHARS || DIGITS.test(segment) || UUID.test(segment) || LONG_HEX.test(segment);
}

/** A normalised request path with its id segments written `{id}`: `/api/orders/7/items` → `/api/orders/{id}/items`. */
export function pathTemplate(path: string): string {
  if (path === '/' || path === '') return '/';
  const segments = path.split('/');
  // segments[0] is the empty string before the leading slash.
  for (let i = 1; i < segments.length; i++) if (isIdSegment(segments[i]!)) segments[i] = '{id}';
  return segments.join('/');
}

/** The resource of a call key; `(other)` when it would be longer than the protocol allows. */
export function resourceOf(protocol: Protocol, verb: string, name: string): string {
  const resource = protocol === HTTP ? `${verb} ${pathTemplate(name)}` : `${verb}#${name}`;
  return resource.length > MAX_RESOURCE_CHARS || verb === '' ? OTHER_RESOURCE : resource;
}
