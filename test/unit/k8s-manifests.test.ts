/**
 * The Kubernetes manifests (k8s/): each overlay rendered by the real kustomize (built from the Go
 * module proxy into Steward's cache by scripts/lib.sh), every object checked against the
 * Kubernetes schemas shipped in the `kubernetes-models` package, twice:
 *
 * - at run time with its JSON-schema validators (types, formats, required fields), and
 * - by the TypeScript checker against its generated interfaces, whose excess-property check
 *   finds fields the API server does not know (a misspelt probe, a container field at pod level),
 *   which the JSON schemas accept;
 *
 * then the essentials of running Steward are asserted: probes, replicas, autoscaler, disruption
 * budget, Service and Ingress wiring, graceful shutdown, the restricted Pod Security Standard, and
 * an environment the server's own configuration schema accepts.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet, type IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress, type IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { type IContainer } from 'kubernetes-models/v1/Container';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { type IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { type IPodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/app-config.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}

/** The kinds the manifests may use, each with the package's schema validator. */
type Model = new (data: never) => { validate(): void };
const MODELS: Record<string, Model> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'networking.k8s.io/v1/Ingress': Ingress,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

const OVERLAYS = ['base', 'overlays/dev', 'overlays/production'] as const;
type Overlay = (typeof OVERLAYS)[number];
const SCALED: Overlay[] = ['base', 'overlays/production'];
const DEPLOYABLE: Overlay[] = ['overlays/dev', 'overlays/production'];

const SERVER = { 'app.kubernetes.io/name': 'steward', 'app.kubernetes.io/component': 'server' };
const AGGREGATOR = { 'app.kubernetes.io/name': 'steward', 'app.kubernetes.io/component': 'stats-aggregator' };

let kustomize = '';
let work = '';
const rendered = new Map<Overlay, K8sObject[]>();
const renderErrors: string[] = [];

async function build(dir: string): Promise<K8sObject[]> {
  const { stdout } = await run(kustomize, ['build', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`kustomize printed invalid YAML: ${doc.errors.join('; ')}`);
    return doc.toJSON() as K8sObject;
  });
}

function objects(overlay: Overlay): K8sObject[] {
  const list = rendered.get(overlay);
  if (!list) throw new Error(`${overlay} was not rendered`);
  return list;
}

function ofKind<T>(overlay: Overlay, kind: string): (T & K8sObject)[] {
  return objects(overlay).filter((o) => o.kind === kind) as (T & K8sObject)[];
}

function one<T>(overlay: Overlay, kind: string, name: string): T & K8sObject {
  const found = ofKind<T>(overlay, kind).filter((o) => o.metadata.name === name);
  expect(found, `${overlay}: exactly one ${kind}/${name}`).toHaveLength(1);
  return found[0]!;
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

interface Workload {
  kind: string;
  name: string;
  template: IPodTemplateSpec;
}

function workloads(overlay: Overlay): Workload[] {
  return [...ofKind<IDeployment>(overlay, 'Deployment'), ...ofKind<IStatefulSet>(overlay, 'StatefulSet')].map((w) => ({
    kind: w.kind,
    name: w.metadata.name,
    template: w.spec!.template,
  }));
}

function podSpec(w: { spec?: { template: IPodTemplateSpec } }): IPodSpec {
  const spec = w.spec?.template.spec;
  if (!spec) throw new Error('no pod spec');
  return spec;
}

/** A container's environment as the kubelet builds it: envFrom first, then env over it. */
function containerEnv(overlay: Overlay, container: IContainer): Record<string, string> {
  const env: Record<string, string> = {};
  const configMap = (name: string) => one<IConfigMap>(overlay, 'ConfigMap', name).data ?? {};
  const secret = (name: string) => {
    const s = one<ISecret>(overlay, 'Secret', name);
    const data: Record<string, string> = { ...s.stringData };
    for (const [k, v] of Object.entries(s.data ?? {})) data[k] = Buffer.from(v, 'base64').toString('utf8');
    return data;
  };
  for (const source of container.envFrom ?? []) {
    const values = source.configMapRef ? configMap(source.configMapRef.name!) : secret(source.secretRef!.name!);
    for (const [k, v] of Object.entries(values)) env[`${source.prefix ?? ''}${k}`] = v;
  }
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.configMapKeyRef)
      env[e.name] = configMap(e.valueFrom.configMapKeyRef.name!)[e.valueFrom.configMapKeyRef.key]!;
    else if (e.valueFrom?.secretKeyRef) env[e.name] = secret(e.valueFrom.secretKeyRef.name!)[e.valueFrom.secretKeyRef.key]!;
    else env[e.name] = '(set by the kubelet)';
  }
  return env;
}

function serverContainer(overlay: Overlay): IContainer {
  const containers = podSpec(one<IDeployment>(overlay, 'Deployment', 'steward')).containers;
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

function aggregatorContainer(overlay: Overlay): IContainer {
  const containers = podSpec(one<IDeployment>(overlay, 'Deployment', 'steward-stats-aggregator')).containers;
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

/** `host:port` pairs a Steward environment points at, by variable. */
function dependencyAddresses(env: Record<string, string>): { variable: string; host: string; port: number }[] {
  const out: { variable: string; host: string; port: number }[] = [];
  const hostPort = (variable: string, entry: string) => {
    const i = entry.lastIndexOf(':');
    out.push({ variable, host: entry.slice(0, i), port: Number(entry.slice(i + 1)) });
  };
  for (const b of (env['KAFKA_BROKERS'] ?? '').split(',').filter(Boolean)) hostPort('KAFKA_BROKERS', b.trim());
  const zk = env['ZOOKEEPER_CONNECT'];
  if (zk) for (const h of zk.split('/')[0]!.split(',')) hostPort('ZOOKEEPER_CONNECT', h.trim());
  for (const u of (env['EUREKA_URLS'] ?? '').split(',').filter(Boolean)) {
    const url = new URL(u.trim());
    out.push({ variable: 'EUREKA_URLS', host: url.hostname, port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) });
  }
  const mongo = /^mongodb(\+srv)?:\/\/(?:[^@/]*@)?([^/?]+)/.exec(env['MONGODB_URI'] ?? '');
  if (mongo && !mongo[1]) for (const h of mongo[2]!.split(',')) hostPort('MONGODB_URI', h.includes(':') ? h : `${h}:27017`);
  return out;
}

/**
 * kustomize writes long base64 values of a Secret on several lines; the API server decodes them
 * with Go's base64, which skips line breaks, but the schema's `byte` format does not.
 */
function normalised(o: K8sObject): K8sObject {
  if (o.kind !== 'Secret') return o;
  const data = (o as ISecret & K8sObject).data ?? {};
  return { ...o, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.replace(/[\r\n]/g, '')])) } as K8sObject;
}

beforeAll(async () => {
  try {
    // Builds kustomize on the first run (about 35 s with Go's caches empty), then only finds it.
    const { stdout } = await run('bash', ['-c', '. scripts/lib.sh && ensure_kustomize'], {
      cwd: repo,
      maxBuffer: 16 * 1024 * 1024,
    });
    kustomize = stdout.trim().split('\n').at(-1)!;
    // A copy, so that production's secrets.env (never committed) can be written beside it.
    work = await mkdtemp(join(tmpdir(), 'steward-k8s-'));
    await cp(join(repo, 'k8s'), join(work, 'k8s'), { recursive: true });
    const example = await readFile(join(work, 'k8s/overlays/production/secrets.env.example'), 'utf8');
    await writeFile(
      join(work, 'k8s/overlays/production/secrets.env'),
      example.replace(/^ADMIN_TOKEN=.*$/m, `ADMIN_TOKEN=${randomBytes(24).toString('hex')}`),
    );
  } catch (error) {
    renderErrors.push(`set-up: ${(error as Error).message}`);
    return;
  }
  for (const overlay of OVERLAYS) {
    try {
      rendered.set(overlay, await build(join(work, 'k8s', overlay)));
    } catch (error) {
      renderErrors.push(`${overlay}: ${(error as Error).message}`);
    }
  }
}, 900_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('Kubernetes manifests (k8s/)', () => {
  it('kustomize renders base, dev and production', () => {
    expect(renderErrors).toEqual([]);
    for (const overlay of OVERLAYS) expect(objects(overlay).length, overlay).toBeGreaterThan(0);
  });

  it('production does not render without its secrets.env', async () => {
    await rm(join(work, 'k8s/overlays/production/secrets.env'));
    await expect(build(join(work, 'k8s/overlays/production'))).rejects.toThrow(/secrets\.env/);
  });

  it.each(OVERLAYS)('%s: every object is valid against the Kubernetes schemas', (overlay) => {
    const failures: string[] = [];
    for (const o of objects(overlay)) {
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      if (!Model) {
        failures.push(`${o.apiVersion} ${o.kind}/${o.metadata.name}: no schema registered in this test`);
        continue;
      }
      try {
        new Model(normalised(o) as never).validate();
      } catch (error) {
        failures.push(`${o.kind}/${o.metadata.name}: ${(error as Error).message}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('every object uses only fields the Kubernetes API knows', () => {
    // One virtual TypeScript file (never written) assigning each object to its kind's interface.
    const file = join(repo, 'test/unit/__k8s_objects__.ts');
    const lines: string[] = [];
    const owners: { from: number; what: string }[] = [];
    const imported = new Map<string, string>();
    const body: string[] = [];
    let line = 0;
    for (const overlay of OVERLAYS) {
      objects(overlay).forEach((o, i) => {
        const module = `kubernetes-models/${o.apiVersion}/${o.kind}`;
        if (!imported.has(module)) imported.set(module, `I${imported.size}`);
        const text = `export const o${overlay.replace(/\W/g, '_')}_${i}: ${imported.get(module)} = ${JSON.stringify(o, null, 1)};`;
        owners.push({ from: line, what: `${overlay}: ${o.kind}/${o.metadata.name}` });
        body.push(text);
        line += text.split('\n').length;
      });
    }
    for (const [module, alias] of imported)
      lines.push(`import type { I${module.split('/').at(-1)} as ${alias} } from '${module}';`);
    const offset = lines.length;
    const source = [...lines, ...body].join('\n');
    const options: ts.CompilerOptions = {
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      types: [],
      lib: ['lib.es2022.d.ts'],
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    const read = host.readFile.bind(host);
    host.getSourceFile = (name, language, ...rest) =>
      name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
    host.fileExists = (name) => name === file || fileExists(name);
    host.readFile = (name) => (name === file ? source : read(name));
    const program = ts.createProgram([file], options, host);
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
      if (d.file?.fileName !== file || d.start === undefined) return message;
      const at = d.file.getLineAndCharacterOfPosition(d.start).line - offset;
      const owner = owners.filter((o) => o.from <= at).at(-1);
      return `${owner?.what ?? '?'}: ${message} (near: ${source.split('\n')[at + offset]?.trim()})`;
    });
    expect(problems).toEqual([]);
  });

  it.each(OVERLAYS)('%s: the server is probed on /livez (startup, liveness) and /readyz (readiness)', (overlay) => {
    const c = serverContainer(overlay);
    const http = c.ports?.find((p) => p.name === 'http');
    expect(http?.containerPort).toBeGreaterThan(0);
    const port = (p: IContainer['livenessProbe']) => p?.httpGet?.port;
    expect(c.startupProbe?.httpGet?.path).toBe('/livez');
    expect(c.livenessProbe?.httpGet?.path).toBe('/livez');
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe])
      expect([http!.name, http!.containerPort]).toContain(port(probe));
    // /readyz bounds each dependency check by READINESS_TIMEOUT_MS: the probe must wait longer.
    const env = containerEnv(overlay, c);
    expect((c.readinessProbe?.timeoutSeconds ?? 1) * 1000).toBeGreaterThan(Number(env['READINESS_TIMEOUT_MS'] ?? 2000));
    expect(env['HOST']).toBe('0.0.0.0');
    expect(Number(env['PORT'] ?? 3000)).toBe(http!.containerPort);
    expect(c.resources?.requests?.['cpu']).toBeDefined();
    expect(c.resources?.requests?.['memory']).toBeDefined();
    expect(c.resources?.limits?.['memory']).toBeDefined();
  });

  it.each(OVERLAYS)('%s: a terminating server drains and exits within its grace period', (overlay) => {
    const spec = podSpec(one<IDeployment>(overlay, 'Deployment', 'steward'));
    const env = containerEnv(overlay, serverContainer(overlay));
    const drain = Number(env['SHUTDOWN_DRAIN_MS'] ?? 0);
    const timeout = Number(env['SHUTDOWN_TIMEOUT_MS'] ?? 15000);
    // The drain (or a preStop hook) lets the endpoints controller and the ingress stop routing first.
    expect(drain > 0 || serverContainer(overlay).lifecycle?.preStop !== undefined).toBe(true);
    expect((spec.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(drain + timeout);
  });

  it.each(SCALED)('%s: at least two servers, autoscaled on CPU, under a disruption budget', (overlay) => {
    const deployment = one<IDeployment>(overlay, 'Deployment', 'steward');
    const hpas = ofKind<IHorizontalPodAutoscaler>(overlay, 'HorizontalPodAutoscaler');
    expect(hpas).toHaveLength(1);
    const hpa = hpas[0]!.spec;
    expect(hpa.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.maxReplicas).toBeGreaterThan(hpa.minReplicas!);
    expect(
      hpa.metrics?.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu' && m.resource.target.type === 'Utilization'),
    ).toBe(true);
    // The autoscaler owns the count; a fixed count, if any, must not undercut it.
    if (deployment.spec!.replicas !== undefined) expect(deployment.spec!.replicas).toBeGreaterThanOrEqual(2);
    // CPU utilisation is measured against requests.
    for (const c of podSpec(deployment).containers) expect(c.resources?.requests?.['cpu']).toBeDefined();

    const pdbs = ofKind<IPodDisruptionBudget>(overlay, 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(1);
    const pdb = pdbs[0]!.spec!;
    expect(matches(pdb.selector?.matchLabels, deployment.spec!.template.metadata?.labels)).toBe(true);
    expect(pdb.minAvailable).toBeGreaterThanOrEqual(1);
    // Below the autoscaler's minimum, or no voluntary eviction could ever happen.
    expect(pdb.minAvailable).toBeLessThan(hpa.minReplicas!);
  });

  it('dev: one server, no autoscaler, no disruption budget', () => {
    expect(one<IDeployment>('overlays/dev', 'Deployment', 'steward').spec!.replicas).toBe(1);
    expect(ofKind('overlays/dev', 'HorizontalPodAutoscaler')).toEqual([]);
    expect(ofKind('overlays/dev', 'PodDisruptionBudget')).toEqual([]);
  });

  it.each(OVERLAYS)('%s: Services select pods and target their ports; the Ingress reaches the server', (overlay) => {
    for (const service of ofKind<IService>(overlay, 'Service')) {
      const backends = workloads(overlay).filter((w) => matches(service.spec?.selector, w.template.metadata?.labels));
      expect(backends.length, `Service/${service.metadata.name} selects a workload`).toBeGreaterThan(0);
      for (const p of service.spec?.ports ?? []) {
        const target = p.targetPort ?? p.port;
        for (const w of backends) {
          const ports = w.template.spec!.containers.flatMap((c) => c.ports ?? []);
          expect(
            ports.some((cp) => cp.name === target || cp.containerPort === target),
            `Service/${service.metadata.name} port ${p.port} → ${target} on ${w.kind}/${w.name}`,
          ).toBe(true);
        }
      }
    }
    const server = one<IService>(overlay, 'Service', 'steward');
    expect(matches(server.spec?.selector, SERVER)).toBe(true);
    const ingress = one<IIngress>(overlay, 'Ingress', 'steward');
    const annotations = ingress.metadata.annotations ?? {};
    // Agents' websockets stay open for hours; SSE streams must not be buffered.
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(300);
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(300);
    expect(annotations['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
    expect(annotations['nginx.ingress.kubernetes.io/affinity']).toBeUndefined();
    const backends = (ingress.spec?.rules ?? []).flatMap((r) => r.http?.paths ?? []).map((p) => p.backend.service);
    expect(backends.length).toBeGreaterThan(0);
    for (const b of backends) {
      expect(b?.name).toBe('steward');
      const port = server.spec!.ports!.find((p) => (b?.port?.name ? p.name === b.port.name : p.port === b?.port?.number));
      expect(port, `Ingress backend port ${JSON.stringify(b?.port)} is a port of Service/steward`).toBeDefined();
    }
  });

  it.each(OVERLAYS)('%s: every pod meets the restricted Pod Security Standard; Steward has a read-only root', (overlay) => {
    for (const w of workloads(overlay)) {
      const spec = w.template.spec!;
      const pod = spec.securityContext ?? {};
      const where = `${w.kind}/${w.name}`;
      expect(spec.hostNetwork || spec.hostPID || spec.hostIPC || false, where).toBe(false);
      expect(
        (spec.volumes ?? []).every((v) => !v.hostPath),
        where,
      ).toBe(true);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        const sc = c.securityContext ?? {};
        const at = `${where} container ${c.name}`;
        expect(sc.runAsNonRoot ?? pod.runAsNonRoot, at).toBe(true);
        expect(sc.runAsUser ?? pod.runAsUser, at).not.toBe(0);
        expect(sc.privileged ?? false, at).toBe(false);
        expect(sc.allowPrivilegeEscalation, at).toBe(false);
        expect(sc.capabilities?.drop, at).toContain('ALL');
        expect(
          (sc.capabilities?.add ?? []).every((cap) => cap === 'NET_BIND_SERVICE'),
          at,
        ).toBe(true);
        expect(['RuntimeDefault', 'Localhost'], at).toContain((sc.seccompProfile ?? pod.seccompProfile)?.type);
      }
      if (matches(SERVER, w.template.metadata?.labels) || matches(AGGREGATOR, w.template.metadata?.labels)) {
        expect(spec.automountServiceAccountToken, where).toBe(false);
        for (const c of spec.containers) {
          expect(c.securityContext?.readOnlyRootFilesystem, where).toBe(true);
          const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
          expect(spec.volumes?.find((v) => v.name === tmp?.name)?.emptyDir, `${where}: /tmp is an emptyDir`).toBeDefined();
        }
      }
    }
    // Overlays enforce it on their namespace.
    if (overlay !== 'base') {
      const ns = ofKind<K8sObject>(overlay, 'Namespace');
      expect(ns).toHaveLength(1);
      expect(ns[0]!.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
      for (const o of objects(overlay)) if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe(ns[0]!.metadata.name);
    }
  });

  it.each(OVERLAYS)('%s: the stats aggregator runs on its own, the servers do not aggregate', (overlay) => {
    const aggregator = one<IDeployment>(overlay, 'Deployment', 'steward-stats-aggregator');
    expect(matches(AGGREGATOR, aggregator.spec!.template.metadata?.labels)).toBe(true);
    const c = aggregatorContainer(overlay);
    expect(c.command).toEqual(['node', 'dist/stats/aggregator-main.js']);
    expect(c.image).toBe(serverContainer(overlay).image);
    // At most one consumer per partition of the stats topic (6).
    expect(aggregator.spec!.replicas ?? 1).toBeGreaterThanOrEqual(1);
    expect(aggregator.spec!.replicas ?? 1).toBeLessThanOrEqual(6);
    expect(containerEnv(overlay, serverContainer(overlay))['STATS_AGGREGATOR']).toBe('off');
  });

  it.each(DEPLOYABLE)(
    "%s: the server's configuration schema accepts the server's and the aggregator's environment",
    (overlay) => {
      for (const c of [serverContainer(overlay), aggregatorContainer(overlay)]) {
        const env = containerEnv(overlay, c);
        const parsed = parseConfig(env);
        expect(parsed.ok ? [] : parsed.errors, `${c.name}`).toEqual([]);
        expect(env['NODE_ENV']).toBe('production');
        expect(env['ADMIN_TOKEN']?.length).toBeGreaterThanOrEqual(24);
      }
    },
  );

  it("base: the placeholder secret is refused by the server's configuration schema", () => {
    const parsed = parseConfig(containerEnv('base', serverContainer('base')));
    expect(parsed.ok ? [] : parsed.errors).toEqual(['ADMIN_TOKEN: must be at least 24 characters']);
  });

  it('dev: the server reaches ZooKeeper, Kafka, MongoDB and Eureka through Services in its namespace', () => {
    const env = containerEnv('overlays/dev', serverContainer('overlays/dev'));
    const addresses = dependencyAddresses(env);
    expect(new Set(addresses.map((a) => a.variable))).toEqual(
      new Set(['KAFKA_BROKERS', 'ZOOKEEPER_CONNECT', 'EUREKA_URLS', 'MONGODB_URI']),
    );
    for (const a of addresses) {
      const service = one<IService>('overlays/dev', 'Service', a.host);
      expect(
        service.spec?.ports?.some((p) => p.port === a.port),
        `${a.variable}: Service/${a.host} exposes ${a.port}`,
      ).toBe(true);
    }
    const statefulSets = ofKind<IStatefulSet>('overlays/dev', 'StatefulSet');
    expect(statefulSets.map((s) => s.metadata.name).sort()).toEqual(['kafka', 'mongodb', 'zookeeper']);
    for (const s of statefulSets) {
      expect(s.spec!.replicas).toBe(1);
      expect(one<IService>('overlays/dev', 'Service', s.spec!.serviceName!).spec?.clusterIP).toBe('None');
    }
  });

  it('production: no dependency runs in the cluster; the addresses are external', () => {
    expect(ofKind('overlays/production', 'StatefulSet')).toEqual([]);
    expect(ofKind('overlays/production', 'PersistentVolumeClaim')).toEqual([]);
    const services = new Set(ofKind<IService>('overlays/production', 'Service').map((s) => s.metadata.name));
    const env = containerEnv('overlays/production', serverContainer('overlays/production'));
    for (const a of dependencyAddresses(env)) expect(services.has(a.host), `${a.variable}: ${a.host}`).toBe(false);
    expect(
      ofKind<IDeployment>('overlays/production', 'Deployment')
        .map((d) => d.metadata.name)
        .sort(),
    ).toEqual(['steward', 'steward-stats-aggregator']);
  });
});
