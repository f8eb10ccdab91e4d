import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import type { Socket } from 'node:net';
import { urlToHttpOptions } from 'node:url';
import { HTTP, OUTBOUND, type Answer, type Call } from '../engine/index.js';
import type { AnswerServer, RequestAgent } from './answer-server.js';
import { Flight, recordAnswered, type Gate } from './interception.js';
import { CALLER_HEADER } from './names.js';
import { currentRequest, newTraceId, TRACE_HEADER, validTraceId } from './trace.js';

/**
 * Outbound HTTP: `http.request`/`get`, `https.request`/`get` (every call signature) and the global
 * `fetch` pass the engine first. Every outbound request carries `x-steward-caller: <application>`
 * so the callee's agent knows its caller, and `x-steward-trace`: the trace id of the inbound request
 * being handled, or a new one. A rejected or degraded call is answered without reaching
 * the callee: fetch gets a Response, http.request a real response from the answer server.
 */

export interface OutboundGate extends Gate {
  calleeOf(host: string, port: number): string;
  /** The agent's own connection to the server: neither guarded nor labelled. */
  isOwn(agent: unknown): boolean;
  readonly answers: AnswerServer;
}

type RequestFn = (...args: unknown[]) => ClientRequest;
type Options = http.RequestOptions & { [key: string]: unknown };
/** Decides, when the request asks for a socket, whether it goes out (`proceed`) or is answered. */
type Settle = (req: ClientRequest, options: object, proceed: () => void) => void;
/** What ClientRequest sets and @types/node does not declare. */
type SentRequest = ClientRequest & { res?: (IncomingMessage & { upgrade?: boolean }) | null };

export function patchOutbound(gate: OutboundGate): void {
  for (const [module, defaultPort] of [
    [http, 80],
    [https, 443],
  ] as const) {
    const request = wrapRequest(gate, module.request as RequestFn, () => module.globalAgent, defaultPort);
    module.request = request;
    // As Node's own get: request, then end.
    module.get = function get(...args: unknown[]): ClientRequest {
      const req = request(...args);
      req.end();
      return req;
    };
  }
  if (typeof globalThis.fetch === 'function') globalThis.fetch = wrapFetch(gate, globalThis.fetch);
  // ESM `import { request } from 'node:http'` binds the export, not the property: refresh the bindings.
  syncBuiltinESMExports();
}

function wrapRequest(gate: OutboundGate, original: RequestFn, globalAgent: () => http.Agent, defaultPort: number): RequestFn {
  return function request(this: unknown, ...args: unknown[]): ClientRequest {
    let prepared: ReturnType<typeof prepare>;
    try {
      if (gate.active) prepared = prepare(gate, args, defaultPort);
    } catch (error) {
      gate.fault('outbound-prepare', error);
    }
    if (prepared === undefined) return original.apply(this, args);

    const { options, callback, verdict } = prepared;
    const site = (call: Call | null) =>
      new Flight(
        call,
        gate,
        OUTBOUND,
        prepared.callee,
        prepared.method,
        prepared.path,
        options.headers,
        prepared.context,
        prepared.trace,
      );
    if (verdict.kind === 'answer') {
      recordAnswered(gate, verdict, () => site(null));
      divert(options, globalAgent(), (req, opts, proceed) => gate.answers.deliver(req, opts, verdict, proceed));
      return original.call(this, options, callback);
    }
    const flight = site(verdict);
    if (verdict.waitMs > 0) {
      divert(options, globalAgent(), (req, opts, proceed) =>
        setTimeout(() => {
          // The application gave up on the request during the wait: give the call back, let Node close it.
          if (req.destroyed) flight.exit(true, 0);
          const next = flight.resume();
          if (next === null || next === undefined) proceed();
          else gate.answers.deliver(req, opts, next, proceed);
        }, verdict.waitMs),
      );
    }
    let req: SentRequest;
    try {
      req = original.call(this, options, callback);
    } catch (error) {
      flight.exit(true, 0);
      throw error;
    }
    // 'close' comes once the response has ended (or the request failed, or was upgraded). A
    // 'response' listener would change Node's behaviour: without one, Node discards the body.
    req.once('close', () => {
      const res = req.res;
      const status = res?.statusCode ?? 0;
      flight.exit(!res || res.statusCode === undefined || res.statusCode >= 500 || (!res.complete && !res.upgrade), status);
    });
    return req;
  };
}

/** Node's own argument handling (ClientRequest's): one fresh options object and the callback. */
function prepare(gate: OutboundGate, args: unknown[], defaultPort: number) {
  let [input, options, callback] = args;
  if (typeof input === 'string') input = urlToHttpOptions(new URL(input));
  else if (input instanceof URL) input = urlToHttpOptions(input);
  else {
    callback = options;
    options = input;
    input = null;
  }
  if (typeof options === 'function') {
    callback = options;
    options = input ?? {};
  } else {
    options = Object.assign(input ?? {}, options);
  }
  const opts = options as Options;
  if (gate.isOwn(opts.agent)) return undefined;

  const context = currentRequest();
  const labelled = withLabels(opts.headers, gate.application, () => context?.traceId ?? newTraceId());
  opts.headers = labelled.headers;
  const host = opts.hostname || opts.host || 'localhost';
  const port = Number(opts.port) || Number(opts.defaultPort) || defaultPort;
  const method = String(opts.method ?? 'GET').toUpperCase();
  const path = opts.path ?? '/';
  const callee = gate.calleeOf(host, port);
  const verdict = gate.engine.enter(OUTBOUND, callee, HTTP, method, path);
  return { options: opts, callback, verdict, callee, method, path, context, trace: labelled.trace };
}

/**
 * A copy of the request's headers with the caller and trace headers added, unless the application
 * set them; and the trace id the request carries (a new one if the application's is not one).
 */
function withLabels(
  headers: http.RequestOptions['headers'],
  application: string,
  traceId: () => string,
): { headers: http.RequestOptions['headers']; trace: string } {
  let caller = false;
  let trace: string | undefined;
  let hasTrace = false;
  if (Array.isArray(headers)) {
    // Node's raw form: name, value, name, value...
    const raw = headers as readonly string[];
    for (let i = 0; i < raw.length; i += 2) {
      const name = String(raw[i]).toLowerCase();
      if (name === CALLER_HEADER) caller = true;
      else if (name === TRACE_HEADER) {
        hasTrace = true;
        trace = validTraceId(raw[i + 1]);
      }
    }
    const id = trace ?? traceId();
    const added = [...(caller ? [] : [CALLER_HEADER, application]), ...(hasTrace ? [] : [TRACE_HEADER, id])];
    return { headers: added.length > 0 ? [...raw, ...added] : raw, trace: id };
  }
  for (const [name, value] of Object.entries(headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower === CALLER_HEADER) caller = true;
    else if (lower === TRACE_HEADER) {
      hasTrace = true;
      trace = validTraceId(value);
    }
  }
  const id = trace ?? traceId();
  if (caller && hasTrace) return { headers, trace: id };
  return {
    headers: { ...headers, ...(caller ? {} : { [CALLER_HEADER]: application }), ...(hasTrace ? {} : { [TRACE_HEADER]: id }) },
    trace: id,
  };
}

/**
 * Holds the request back at the point it asks for a socket, then lets `settle` decide. The request
 * gets a stand-in agent inheriting from the one it would have used (so ClientRequest sees the same
 * protocol, port and keep-alive), whose addRequest defers. Writes made meanwhile are buffered by
 * ClientRequest as before any connection.
 */
function divert(options: Options, globalAgent: http.Agent, settle: Settle): void {
  const { agent, createConnection } = options;
  const viaCreateConnection = agent == null && typeof createConnection === 'function';
  // Node's choices: agent false → a fresh agent of the default kind; createConnection without an
  // agent → no pooling, which a fresh default agent (no keep-alive) reproduces for ClientRequest.
  const base = (
    agent === false || viaCreateConnection
      ? new (globalAgent.constructor as typeof http.Agent)()
      : (agent ?? options._defaultAgent ?? globalAgent)
  ) as http.Agent & RequestAgent;
  const proceed = (req: ClientRequest, opts: object) =>
    viaCreateConnection ? connectWith(createConnection, req, opts) : base.addRequest(req, opts);
  options.agent = Object.create(base, {
    addRequest: { value: (req: ClientRequest, opts: object) => settle(req, opts, () => proceed(req, opts)) },
  }) as http.Agent;
}

/** What ClientRequest does with a createConnection option and no agent. */
function connectWith(createConnection: NonNullable<http.RequestOptions['createConnection']>, req: ClientRequest, opts: object) {
  const onSocket = req.onSocket.bind(req) as (socket: Socket | undefined, error?: Error) => void;
  let done = false;
  const oncreate = (error: Error | null, socket?: unknown) => {
    if (done) return;
    done = true;
    if (error) onSocket(undefined, error);
    else onSocket(socket as Socket);
  };
  try {
    const socket = createConnection({ ...opts, path: (opts as Options).socketPath }, oncreate);
    if (socket) oncreate(null, socket);
  } catch (error) {
    oncreate(error as Error);
  }
}

function wrapFetch(gate: OutboundGate, original: typeof fetch): typeof fetch {
  return async function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    let prepared: ReturnType<typeof prepareFetch> | undefined;
    try {
      if (gate.active) prepared = prepareFetch(gate, input, init);
    } catch (error) {
      gate.fault('fetch-prepare', error);
    }
    if (prepared === undefined) return original(input, init);

    const { verdict, method, headers, callee, path, context, trace } = prepared;
    const site = (call: Call | null) => new Flight(call, gate, OUTBOUND, callee, method, path, headers, context, trace);
    if (verdict.kind === 'answer') {
      recordAnswered(gate, verdict, () => site(null));
      return respond(gate, verdict, method) ?? original(input, prepared.init);
    }
    const flight = site(verdict);
    if (verdict.waitMs > 0) {
      const signal = prepared.init.signal ?? (input instanceof Request ? input.signal : undefined);
      await sleep(verdict.waitMs, signal ?? undefined);
      // Aborted during the wait: give the call back; fetch then rejects as the application expects.
      if (signal?.aborted) flight.exit(true, 0);
      const next = flight.resume();
      if (next) return respond(gate, next, method) ?? original(input, prepared.init);
    }
    try {
      const response = await original(input, prepared.init);
      flight.exit(response.status >= 500, response.status);
      return response;
    } catch (error) {
      flight.exit(true, 0);
      throw error;
    }
  };
}

function prepareFetch(gate: OutboundGate, input: string | URL | Request, init: RequestInit | undefined) {
  const request = input instanceof Request ? input : undefined;
  const url = new URL(input instanceof Request ? input.url : input);
  const method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
  const headers = new Headers(init?.headers ?? request?.headers);
  if (!headers.has(CALLER_HEADER)) headers.set(CALLER_HEADER, gate.application);
  const context = currentRequest();
  const own = headers.get(TRACE_HEADER);
  const trace = validTraceId(own) ?? context?.traceId ?? newTraceId();
  if (own === null) headers.set(TRACE_HEADER, trace);
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const callee = gate.calleeOf(url.hostname, port);
  const path = `${url.pathname}${url.search}`;
  const verdict = gate.engine.enter(OUTBOUND, callee, HTTP, method, path);
  return { verdict, method, init: { ...init, headers }, headers, callee, path, context, trace };
}

/** The answer as a Response; undefined if it cannot be built (the call then goes out unguarded). */
function respond(gate: Gate, answer: Answer, method: string): Response | undefined {
  try {
    const empty = answer.body.byteLength === 0 || method === 'HEAD' || [204, 205, 304].includes(answer.status);
    return new Response(empty ? null : answer.body, { status: answer.status, headers: answer.headers as [string, string][] });
  } catch (error) {
    gate.fault('fetch-answer', error);
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const wake = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    signal?.addEventListener('abort', wake, { once: true });
  });
}
