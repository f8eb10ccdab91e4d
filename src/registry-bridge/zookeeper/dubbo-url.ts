import type { DubboServiceRef, InstanceStatus, Registration } from '../registration.js';

/**
 * Dubbo's interface-level registrations keep everything in the znode *name*: a Java form-encoded
 * URL such as `dubbo%3A%2F%2F10.0.0.7%3A20880%2Fcom.foo.Bar%3Fapplication%3Dfoo%26…`.
 */

/** The part of a registration that names a URL at all; other children are not registrations. */
export const ENCODED_URL_MARK = '%3A%2F%2F';

export class BadDubboUrl extends Error {}

export interface DubboUrl {
  protocol: string;
  host: string;
  port: number;
  path: string;
  params: Map<string, string>;
}

/** Java's URLEncoder writes a space as `+`; decodeURIComponent alone would keep the `+`. */
export function formDecode(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch {
    throw new BadDubboUrl('not valid percent-encoding');
  }
}

/**
 * Parses a decoded Dubbo URL. Parameter values are taken verbatim: Dubbo does not encode them
 * inside the URL, so decoding again would corrupt values such as `mock=force:return+null`.
 */
export function parseDubboUrl(url: string): DubboUrl {
  const schemeEnd = url.indexOf('://');
  if (schemeEnd <= 0) throw new BadDubboUrl('no protocol');
  const protocol = url.slice(0, schemeEnd);
  if (!/^[a-z][a-z0-9+.-]*$/i.test(protocol)) throw new BadDubboUrl(`bad protocol "${protocol.slice(0, 40)}"`);
  const rest = url.slice(schemeEnd + 3);
  const query = rest.indexOf('?');
  const beforeQuery = query === -1 ? rest : rest.slice(0, query);
  const slash = beforeQuery.indexOf('/');
  let authority = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash);
  const path = slash === -1 ? '' : beforeQuery.slice(slash + 1);
  const at = authority.lastIndexOf('@');
  if (at !== -1) authority = authority.slice(at + 1);

  let host: string;
  let portText = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw new BadDubboUrl('unterminated IPv6 address');
    host = authority.slice(1, close);
    if (authority[close + 1] === ':') portText = authority.slice(close + 2);
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon === -1 ? authority : authority.slice(0, colon);
    portText = colon === -1 ? '' : authority.slice(colon + 1);
  }
  if (host === '') throw new BadDubboUrl('no host');
  const port = portText === '' ? 0 : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new BadDubboUrl(`bad port "${portText.slice(0, 20)}"`);

  const params = new Map<string, string>();
  if (query !== -1) {
    for (const pair of url.slice(schemeEnd + 3 + query + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const key = eq === -1 ? pair : pair.slice(0, eq);
      if (key !== '') params.set(key, eq === -1 ? '' : pair.slice(eq + 1));
    }
  }
  return { protocol, host, port, path, params };
}

/** Dubbo's service key: `group/interface:version`, empty parts left out. */
export function serviceKey(iface: string, group: string, version: string): string {
  return `${group ? `${group}/` : ''}${iface}${version ? `:${version}` : ''}`;
}

// Parameters lifted into the registration's own fields; everything else stays in metadata.
const LIFTED = new Set(['application', 'interface', 'group', 'version', 'methods', 'side', 'weight', 'timestamp']);

function weightOf(params: Map<string, string>): number {
  const raw = params.get('weight');
  const weight = raw === undefined ? 100 : Number(raw);
  return Number.isFinite(weight) && weight >= 0 ? weight : 100;
}

function statusOf(params: Map<string, string>): InstanceStatus {
  return params.get('disabled') === 'true' || params.get('enabled') === 'false' ? 'DISABLED' : 'UP';
}

/**
 * Turns one child of `/<root>/<interface>/providers|consumers` into a registration.
 * Throws BadDubboUrl for a child that claims to be a URL but cannot be read.
 */
export function registrationFromZnode(
  source: string,
  folder: { path: string; interface: string; category: 'providers' | 'consumers' },
  child: string,
): Registration {
  const url = parseDubboUrl(formDecode(child));
  const p = url.params;
  const iface = p.get('interface') || url.path || folder.interface;
  const group = p.get('group') ?? '';
  const version = p.get('version') ?? '';
  const side: DubboServiceRef['side'] =
    p.get('side') === 'consumer' || (p.get('side') === undefined && folder.category === 'consumers') ? 'consumer' : 'provider';
  const methods = (p.get('methods') ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m !== '');
  const metadata: Record<string, string> = {};
  for (const [key, value] of p) if (!LIFTED.has(key)) metadata[key] = value;
  const timestamp = Number(p.get('timestamp'));
  return {
    key: `${folder.path}/${child}`,
    source,
    sourceKind: 'zookeeper',
    application: (p.get('application') || 'unknown').toLowerCase(),
    kind: 'dubbo',
    host: url.host,
    port: url.port,
    status: statusOf(p),
    weight: weightOf(p),
    services: [
      { key: serviceKey(iface, group, version), interface: iface, group, version, protocol: url.protocol, methods, side },
    ],
    metadata,
    ...(Number.isFinite(timestamp) && timestamp > 0 ? { timestamp } : {}),
  };
}
