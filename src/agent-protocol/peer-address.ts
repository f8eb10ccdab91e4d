/**
 * The `peer` of a statistics entry or call record (docs/agent-protocol.md "Statistics and call
 * records"): an application name; for an outbound call whose callee the agent could not name, the
 * address the call was made to, `host:port` (the server resolves it to an application when it
 * knows who listens there, peer-index.ts); '' when neither is known. Dependency-free: the agent
 * and the server share it.
 */

/** An application name, or `host:port` (at most 128 characters either way), or ''. */
export const PEER = /^(?:|[a-z0-9][a-z0-9._-]{0,127}|(?=.{3,128}$)(?:[a-z0-9][a-z0-9._-]*|\[[0-9a-f:.]+\]):[1-9][0-9]{0,4})$/;

/** Whether a (valid) peer is an address rather than an application name: names never hold a ':'. */
export function isPeerAddress(peer: string): boolean {
  return peer.includes(':');
}

/** Lower case, IPv6 in brackets: the form of the host in a `host:port` address (as a URL's host). */
export function normaliseHost(host: string): string {
  const lower = host.toLowerCase();
  return lower.includes(':') && !lower.startsWith('[') ? `[${lower}]` : lower;
}

/** The peer address of `host:port` (host normalised), or '' when it cannot be one (odd characters, too long). */
export function peerAddress(host: string, port: number): string {
  const address = `${normaliseHost(host)}:${port}`;
  return PEER.test(address) ? address : '';
}
