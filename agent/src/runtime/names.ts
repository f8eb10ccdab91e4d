import { isIP } from 'node:net';
import { normaliseHost, PEER } from '../../../src/agent-protocol/peer-address.js';

/**
 * Who is on the other side of a call (docs/rules.md "How a call finds its rules"): the caller of an
 * inbound call from the header the calling agent sets, the callee of an outbound call from the
 * address it is made to.
 */

/** Application names as the catalog and the rule schema write them. */
export const APPLICATION_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** Set by every agent on its outbound requests to its own application name. */
export const CALLER_HEADER = 'x-steward-caller';

/** At most this many addresses are kept from a `peers` frame, so a huge frame cannot grow memory without bound. */
export const MAX_PEERS = 10_000;

/** The caller named by an inbound request's header: lower-cased, '' when absent or not an application name. */
export function callerOf(header: string | string[] | undefined): string {
  if (typeof header !== 'string') return '';
  const caller = header.toLowerCase();
  return APPLICATION_NAME.test(caller) ? caller : '';
}

/** A service id such as `stock` in `http://stock/api`: an application name that is neither an IP literal nor localhost. */
function isServiceId(host: string): boolean {
  return APPLICATION_NAME.test(host) && host !== 'localhost' && isIP(host) === 0;
}

/** The address → application map of the latest `peers` frame, and callee resolution with it. */
export class Peers {
  private byAddress = new Map<string, string>();

  get size(): number {
    return this.byAddress.size;
  }

  /** Replaces the map whole; returns how many entries were dropped over the cap. */
  replace(entries: readonly { address: string; application: string }[]): number {
    const next = new Map<string, string>();
    for (const { address, application } of entries.slice(0, MAX_PEERS)) {
      const colon = address.lastIndexOf(':');
      next.set(`${normaliseHost(address.slice(0, colon))}${address.slice(colon)}`, application);
    }
    this.byAddress = next;
    return Math.max(0, entries.length - MAX_PEERS);
  }

  /**
   * The callee of a call to host:port: the peers map first, then the host itself if it is a service
   * id, else the address `host:port` (normalised; the server may know who listens there), else ''.
   */
  calleeOf(host: string, port: number): string {
    const normal = normaliseHost(host);
    const address = `${normal}:${port}`;
    if (this.byAddress.size > 0) {
      const application = this.byAddress.get(address);
      if (application !== undefined) return application;
    }
    if (isServiceId(normal)) return normal;
    return PEER.test(address) ? address : '';
  }
}
