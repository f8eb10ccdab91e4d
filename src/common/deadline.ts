/**
 * A signal that aborts after `timeoutMs`, or as soon as `outer` aborts, and a `clear()` that
 * releases its timer and its listener on `outer`.
 *
 * Not `AbortSignal.any([outer, AbortSignal.timeout(ms)])`: on Node 20 a timeout signal that only
 * `any()` refers to is held weakly and can be garbage-collected before it fires, so a request to a
 * peer that never answers waits for ever (seen in CI: the server's start hung on a silent Eureka;
 * reproduced with `--expose-gc`, test/unit/deadline.test.ts). Here the timer holds the controller.
 */
export interface Deadline {
  readonly signal: AbortSignal;
  clear(): void;
}

export function deadline(timeoutMs: number, outer?: AbortSignal): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  const onOuter = () => controller.abort(outer?.reason);
  if (outer?.aborted) onOuter();
  else outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}
