import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, reachable } from './api';
import { liveStatus } from './live';
import { Store } from './store';

/** Bumped when the socket comes back or the server answers again: every view re-fetches once. */
export const resync = new Store(0);
{
  let wasDown = false;
  liveStatus.subscribe((s) => {
    if (s.state === 'disconnected') wasDown = true;
    if (s.state === 'connected' && wasDown) {
      wasDown = false;
      resync.update((n) => n + 1);
    }
  });
  let unreachable = false;
  reachable.subscribe((ok) => {
    if (!ok) unreachable = true;
    else if (unreachable) {
      unreachable = false;
      resync.update((n) => n + 1);
    }
  });
}

export interface ApiState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** When the data shown was fetched (ms). */
  at: number | undefined;
  reload: () => void;
  setData: (fn: (data: T | undefined) => T | undefined) => void;
}

const pathOf = (url: string) => url.split('?')[0];

/**
 * GET `url` (null: nothing), keeping the last data when a refresh fails (never a blank page);
 * data is cleared only when the path itself (not the query) changes. `refreshMs` polls while the
 * page is visible; a resync (socket back, server back) fetches again.
 */
export function useApi<T>(url: string | null, options: { refreshMs?: number } = {}): ApiState<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean; at: number | undefined }>({
    data: undefined,
    error: undefined,
    loading: url !== null,
    at: undefined,
  });
  const [tick, setTick] = useState(0);
  const lastPath = useRef<string | undefined>(url === null ? undefined : pathOf(url));
  const reload = useCallback(() => setTick((n) => n + 1), []);

  useEffect(() => resync.subscribe(reload), [reload]);

  useEffect(() => {
    if (url === null) {
      setState({ data: undefined, error: undefined, loading: false, at: undefined });
      return;
    }
    const controller = new AbortController();
    const samePath = lastPath.current === pathOf(url);
    lastPath.current = pathOf(url);
    setState((s) => (samePath ? { ...s, loading: true } : { data: undefined, error: undefined, loading: true, at: undefined }));
    api<T>(url, { signal: controller.signal }).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: undefined, loading: false, at: Date.now() });
      },
      (error: unknown) => {
        if (controller.signal.aborted || (error instanceof DOMException && error.name === 'AbortError')) return;
        setState((s) => ({ ...s, error, loading: false }));
      },
    );
    return () => controller.abort();
  }, [url, tick]);

  useEffect(() => {
    if (!options.refreshMs || url === null) return;
    const timer = setInterval(() => {
      if (!document.hidden) reload();
    }, options.refreshMs);
    return () => clearInterval(timer);
  }, [options.refreshMs, url, reload]);

  const setData = useCallback((fn: (data: T | undefined) => T | undefined) => setState((s) => ({ ...s, data: fn(s.data) })), []);
  return { ...state, reload, setData };
}

/** The value after it stopped changing for `ms`. */
export function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

/** Re-renders every `ms` (relative times, live charts). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

export function isForbidden(error: unknown): boolean {
  return error instanceof ApiError && error.status === 403;
}
