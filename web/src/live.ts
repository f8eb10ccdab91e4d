import { io, type Socket } from 'socket.io-client';
import { useEffect, useRef } from 'preact/hooks';
import { api } from './api';
import { Store } from './store';
import type { LiveSecond } from './types';

/**
 * The dashboard's live feed: socket.io namespace `/dashboard` (websocket transport, the token in
 * the handshake). Events: `catalog`, `agents`, `rules`, `stats`; each may carry one object or an
 * array of them, and listeners always get one object at a time.
 */

export type LiveEvent = 'catalog' | 'agents' | 'rules' | 'stats';
export const LIVE_EVENTS: LiveEvent[] = ['catalog', 'agents', 'rules', 'stats'];

export interface CatalogEvent {
  seq: number;
  /** More changes than one event holds: reload the catalog. */
  reset?: boolean;
  changes: { seq: number; type: 'added' | 'removed' | 'updated'; at: number; instance: { id: string; application: string } }[];
}
export interface AgentEvent {
  application: string;
  instanceId: string;
  event: 'connected' | 'disconnected' | 'ack' | 'nack';
  revision?: number;
  reason?: string;
  at: number;
}
export interface RulesEvent {
  application: string;
  revision: number;
  at: number;
}
export interface LivePayloads {
  catalog: CatalogEvent;
  agents: AgentEvent;
  rules: RulesEvent;
  stats: LiveSecond;
}

/** The server's greeting on each connection. */
export interface LiveHello {
  name: string;
  role: string;
  catalogSeq: number;
  /** Whether this replica aggregates statistics: without it, no `stats` events come. */
  aggregating: boolean;
}

export interface LiveStatus {
  state: 'idle' | 'connecting' | 'connected' | 'disconnected';
  hello?: LiveHello;
  /** When the state was entered (ms). */
  since: number;
  error?: string;
  /** Whether it was ever connected during this session (the banner shows only after a failure). */
  everConnected: boolean;
}

export const liveStatus = new Store<LiveStatus>({ state: 'idle', since: Date.now(), everConnected: false });

type Listener = (payload: never) => void;
const listeners = new Map<LiveEvent, Set<Listener>>();
let socket: Socket | undefined;
let retryTimer: ReturnType<typeof setTimeout> | undefined;

function dispatch(event: LiveEvent, args: unknown[]): void {
  const set = listeners.get(event);
  if (!set || set.size === 0) return;
  for (const arg of args) {
    const items = Array.isArray(arg) ? (arg as unknown[]) : [arg];
    for (const item of items) {
      if (typeof item !== 'object' || item === null) continue;
      for (const listener of [...set]) {
        try {
          (listener as (p: unknown) => void)(item);
        } catch (err) {
          console.error(`live ${event} listener failed`, err);
        }
      }
    }
  }
}

function setState(state: LiveStatus['state'], error?: string): void {
  const prev = liveStatus.get();
  if (prev.state === state && prev.error === error) return;
  liveStatus.set({
    state,
    since: prev.state === state ? prev.since : Date.now(),
    everConnected: prev.everConnected || state === 'connected',
    ...(prev.hello ? { hello: prev.hello } : {}),
    ...(error ? { error } : {}),
  });
}

export function startLive(token: string): void {
  stopLive();
  setState('connecting');
  const s = io('/dashboard', {
    auth: { token },
    transports: ['websocket'],
    reconnectionDelay: 1000,
    reconnectionDelayMax: 10_000,
    randomizationFactor: 0.5,
  });
  socket = s;
  s.on('connect', () => setState('connected'));
  s.on('disconnect', (reason) => {
    setState('disconnected', reason);
    // The server closed the session on purpose: socket.io does not reconnect by itself then.
    if (reason === 'io server disconnect') scheduleRetry(s, 2000);
  });
  s.on('hello', (hello: LiveHello) => {
    if (socket === s && hello && typeof hello === 'object') liveStatus.set({ ...liveStatus.get(), hello });
  });
  s.on('connect_error', (err: Error) => {
    setState('disconnected', err.message);
    // the token may have been revoked: a REST call finds out (a 401 logs out)
    if (err.message === 'unauthorized') void api('/api/me').catch(() => undefined);
    // A refusal by the server's middleware leaves the socket inactive: retry slowly.
    if (!s.active) scheduleRetry(s, 5000);
  });
  for (const event of LIVE_EVENTS) s.on(event, (...args: unknown[]) => dispatch(event, args));
}

function scheduleRetry(s: Socket, ms: number): void {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    if (socket === s && !s.connected) {
      setState('connecting');
      s.connect();
    }
  }, ms);
}

export function stopLive(): void {
  clearTimeout(retryTimer);
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
    socket = undefined;
  }
  liveStatus.set({ state: 'idle', since: Date.now(), everConnected: false });
}

export function onLive<E extends LiveEvent>(event: E, listener: (payload: LivePayloads[E]) => void): () => void {
  let set = listeners.get(event);
  if (!set) listeners.set(event, (set = new Set()));
  set.add(listener);
  return () => set.delete(listener);
}

/** Subscribes for the life of the component; the latest `listener` is always the one called. */
export function useLive<E extends LiveEvent>(event: E, listener: (payload: LivePayloads[E]) => void): void {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => onLive(event, (p) => ref.current(p)), [event]);
}

/**
 * Calls `reload` (debounced) when a live event passes `filter`: views re-fetch what changed, at
 * most once per `ms`, however many events arrive.
 */
export function useLiveRefresh<E extends LiveEvent>(
  events: E[],
  reload: () => void,
  filter?: (event: E, payload: LivePayloads[E]) => boolean,
  ms = 1000,
): void {
  const reloadRef = useRef(reload);
  reloadRef.current = reload;
  const filterRef = useRef(filter);
  filterRef.current = filter;
  const key = events.join(',');
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const trigger = () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        reloadRef.current();
      }, ms);
    };
    const offs = (key.split(',') as E[]).map((event) =>
      onLive(event, (payload) => {
        if (!filterRef.current || filterRef.current(event, payload)) trigger();
      }),
    );
    return () => {
      clearTimeout(timer);
      for (const off of offs) off();
    };
  }, [key, ms]);
}
