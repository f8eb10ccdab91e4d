import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { HTTP, INBOUND, type Answer } from '../engine/index.js';
import { Flight, recordAnswered, writeAnswer, type Gate } from './interception.js';
import { CALLER_HEADER, callerOf } from './names.js';
import { enterRequest, RequestContext, TRACE_HEADER } from './trace.js';

/**
 * Inbound HTTP: every http and https server's `request` event passes the engine first, whatever
 * framework listens to it (plain handlers, express, Nest...). A rejected or degraded request is
 * answered here and never reaches the application.
 */

export interface InboundGate extends Gate {
  portOpened(port: number): void;
  portClosed(port: number): void;
}

type Emit = (this: http.Server, event: string | symbol, ...args: unknown[]) => boolean;

/** The agent's own servers (the answer server): neither guarded nor reported as the application's ports. */
const internalServers = new WeakSet<object>();

export function markInternal(server: http.Server): void {
  internalServers.add(server);
}

export function patchInbound(gate: InboundGate): void {
  const ports = new WeakMap<object, number>();
  for (const proto of [http.Server.prototype, https.Server.prototype] as http.Server[]) {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the server as `this`
    const original = proto.emit as Emit;
    proto.emit = function emit(this: http.Server, event: string | symbol, ...args: unknown[]): boolean {
      if (gate.active && !internalServers.has(this)) {
        if (event === 'request') return onRequest(gate, this, original, args[0] as IncomingMessage, args[1] as ServerResponse);
        try {
          if (event === 'listening') {
            const address = this.address();
            if (address !== null && typeof address === 'object') {
              ports.set(this, address.port);
              gate.portOpened(address.port);
            }
          } else if (event === 'close' && ports.has(this)) {
            gate.portClosed(ports.get(this)!);
            ports.delete(this);
          }
        } catch (error) {
          gate.fault('inbound-ports', error);
        }
      }
      return original.call(this, event, ...args);
    } as typeof proto.emit;
  }
}

function onRequest(gate: Gate, server: http.Server, emit: Emit, req: IncomingMessage, res: ServerResponse): boolean {
  let verdict;
  let caller = '';
  try {
    caller = callerOf(req.headers[CALLER_HEADER]);
    verdict = gate.engine.enter(INBOUND, caller, HTTP, req.method ?? 'GET', req.url ?? '/');
  } catch (error) {
    gate.fault('inbound-enter', error);
    return emit.call(server, 'request', req, res);
  }
  if (verdict.kind === 'answer') {
    const reply = verdict;
    recordAnswered(gate, reply, () => {
      const context = new RequestContext(req.headers[TRACE_HEADER], req.headers);
      return new Flight(null, gate, INBOUND, caller, req.method ?? 'GET', req.url ?? '/', req.headers, context, undefined);
    });
    return answer(gate, server, emit, req, res, reply);
  }

  const context = new RequestContext(req.headers[TRACE_HEADER], req.headers);
  const flight = new Flight(verdict, gate, INBOUND, caller, req.method ?? 'GET', req.url ?? '/', req.headers, context, undefined);
  // 'close' follows 'finish' on a completed response, and comes alone when the client went away.
  res.once('close', () =>
    flight.exit(!res.writableFinished || res.statusCode >= 500, res.headersSent || res.writableFinished ? res.statusCode : 0),
  );
  // The handler, what it starts, and the request body's events (emitted in this same async context) see the request.
  try {
    enterRequest(context);
  } catch (error) {
    gate.fault('inbound-context', error);
  }
  if (verdict.waitMs === 0) return proceed(server, emit, req, res, flight);
  setTimeout(() => {
    const next = flight.resume();
    // undefined: the client left during the wait, and 'close' gave the call back.
    if (next === null) proceed(server, emit, req, res, flight);
    else if (next !== undefined) answer(gate, server, emit, req, res, next);
  }, verdict.waitMs);
  return true;
}

function proceed(server: http.Server, emit: Emit, req: IncomingMessage, res: ServerResponse, flight: Flight): boolean {
  try {
    return emit.call(server, 'request', req, res);
  } catch (error) {
    flight.exit(true, 0);
    throw error;
  }
}

function answer(gate: Gate, server: http.Server, emit: Emit, req: IncomingMessage, res: ServerResponse, reply: Answer): boolean {
  try {
    writeAnswer(res, reply);
    return true;
  } catch (error) {
    gate.fault('inbound-answer', error);
    return emit.call(server, 'request', req, res);
  }
}
