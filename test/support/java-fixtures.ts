/**
 * Real Java applications for the registry-bridge integration tests (sources: test/fixtures/java):
 *
 * - `dubbo3-provider`: Apache Dubbo 3.3 provider (GreetingsService, OrderService), ZooKeeper registry;
 * - `dubbo3-consumer`: Dubbo 3.3 consumer calling GreetingsService.sayHi every 20 ms, `GET /stats`
 *   (calls per provider port) and `POST /reset` on its HTTP port;
 * - `dubbo27-provider`: Apache Dubbo 2.7 provider (GreetingsService), interface-level registration only;
 * - `spring-eureka-app`: Spring Boot app in Eureka and, through Dubbo 3, in ZooKeeper (StockService)
 *   under the same application name.
 *
 * `buildJavaFixtures()` runs Maven once per version of the sources: it builds in a copy of them and
 * keeps the jars in `${STEWARD_CACHE_DIR:-~/.cache/steward}/fixtures/<hash>/`, so the work tree gets
 * no `target/` folders and a repeated run (or another checkout) does not build again.
 *
 * `startFixture()` starts one JVM, logging to `<STACK_DIR>/fixtures/<name>-<app>-<port>.log`, and
 * resolves only once the application is really there (its znodes in ZooKeeper, its instance UP in
 * Eureka, its HTTP endpoint answering). Every JVM is told this process's pid and exits by itself when
 * this process is gone; `stopAllFixtures()` (for `afterAll`) and an exit hook stop the rest.
 *
 * Every fixture registers 127.0.0.1 and talks to loopback only (see Fixture.loopbackOnly in the Java
 * sources); Dubbo providers listen on 0.0.0.0, since Dubbo refuses to bind 127.x.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultOptions } from '../../stack/local-stack.js';
import { freePort } from './net.js';
import { ZkClient } from './zk.js';

export type FixtureName = 'dubbo3-provider' | 'dubbo3-consumer' | 'dubbo27-provider' | 'spring-eureka-app';

export const GREETINGS_SERVICE = 'org.apache.dubbo.samples.api.GreetingsService';
export const ORDER_SERVICE = 'com.example.order.OrderService';
export const STOCK_SERVICE = 'com.example.inventory.StockService';

export interface FixtureOptions {
  /** Application name (Dubbo `application`, `spring.application.name`); default `steward-<name>`. */
  app?: string;
  /** Dubbo protocol port (providers, and the Spring app's Dubbo side); default: a free port. */
  port?: number;
  /** HTTP port (consumer stats, Spring `server.port`); default: a free port. */
  httpPort?: number;
  /** dubbo3-provider: `all` (Dubbo's default), `instance` or `interface`. */
  registerMode?: 'all' | 'instance' | 'interface';
  /** dubbo3-provider: `remote` also writes /dubbo/metadata/<app>/<revision>. */
  metadataType?: 'local' | 'remote';
  /** Service group of the providers' services and of the consumer's reference. */
  group?: string;
  /** Providers: warm-up in ms (Dubbo's default 600000 skews weights for 10 minutes; 0 = none). */
  warmupMs?: number;
  /** Providers: service weight (Dubbo's default 100). */
  weight?: number;
  /** dubbo3-consumer: pause between calls (default 20 ms). */
  intervalMs?: number;
  /** dubbo3-consumer: Dubbo's address migration step; unset = Dubbo 3's default APPLICATION_FIRST. */
  migration?: 'FORCE_INTERFACE' | 'APPLICATION_FIRST' | 'FORCE_APPLICATION';
  /** spring-eureka-app: also export StockService through Dubbo into ZooKeeper (default true). */
  dubbo?: boolean;
  /** ZooKeeper connect string; default: the local stack's. */
  zookeeper?: string;
  /** Eureka base URL; default: the local stack's. */
  eurekaUrl?: string;
  /** Extra `--key=value` arguments for the main class (Spring properties for the Spring app). */
  args?: string[];
  /** Extra JVM options. */
  jvmArgs?: string[];
  startTimeoutMs?: number;
}

export interface FixtureHandle {
  readonly name: FixtureName;
  readonly app: string;
  readonly pid: number;
  /** The main port: Dubbo port of a provider, HTTP port of the consumer and of the Spring app. */
  readonly port: number;
  readonly ports: { dubbo?: number; http?: number };
  readonly logFile: string;
  /** Milliseconds from spawn until the application was seen ready. */
  readonly startMs: number;
  /** `http://127.0.0.1:<httpPort>` for the consumer and the Spring app. */
  readonly url?: string;
  exited(): boolean;
  rssMiB(): Promise<number | undefined>;
  /** SIGTERM (graceful: the app unregisters), SIGKILL after `timeoutMs`; resolves once it exited. */
  stop(timeoutMs?: number): Promise<void>;
}

export interface FixtureBuild {
  dir: string;
  hash: string;
  /** True when this call ran Maven, false when the cache had it. */
  built: boolean;
  buildMs: number;
}

const repoDir = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const sourcesDir = join(repoDir, 'test', 'fixtures', 'java');
const stackOptions = defaultOptions(() => undefined);
const fixturesCacheDir = join(stackOptions.cacheDir, 'fixtures');
const runDir = join(stackOptions.stackDir, 'fixtures');
const defaultZookeeper = `127.0.0.1:${stackOptions.ports.zookeeper}`;
const defaultEureka = `http://127.0.0.1:${stackOptions.ports.eureka}/eureka`;

/** The modules started with `java -cp <jar>:<api jar>:<classpath.txt> <main>`. */
const MAIN_CLASSES: Record<Exclude<FixtureName, 'spring-eureka-app'>, string> = {
  'dubbo3-provider': 'io.steward.fixtures.dubbo3.ProviderMain',
  'dubbo3-consumer': 'io.steward.fixtures.dubbo3.ConsumerMain',
  'dubbo27-provider': 'io.steward.fixtures.dubbo27.ProviderMain',
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- build ----------------------------------------------------------------------------------

async function sourceFiles(): Promise<string[]> {
  const entries = await readdir(sourcesDir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((path) => {
      const rel = relative(sourcesDir, path);
      return !rel.split('/').includes('target') && rel !== 'NOTES.md';
    })
    .sort();
}

async function hashFiles(paths: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const path of paths) {
    hash.update(relative(sourcesDir, path));
    hash.update(await readFile(path));
  }
  return hash.digest('hex').slice(0, 16);
}

async function runCommand(command: string, args: string[], cwd: string): Promise<void> {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) {
    const last = output.trim().split('\n').slice(-40).join('\n');
    throw new Error(`${command} ${args.join(' ')} failed (exit ${code}):\n${last}`);
  }
}

/** A built fixture set is usable while its classpath files still point at jars that exist (~/.m2). */
async function complete(dir: string): Promise<boolean> {
  if (!existsSync(join(dir, 'build.json')) || !existsSync(join(dir, 'spring-eureka-app.jar'))) return false;
  for (const name of Object.keys(MAIN_CLASSES)) {
    const classpath = join(dir, name, 'classpath.txt');
    if (!existsSync(classpath)) return false;
    const jars = (await readFile(classpath, 'utf8')).trim().split(':');
    if (!jars.every((jar) => existsSync(jar))) return false;
  }
  return true;
}

let building: Promise<FixtureBuild> | undefined;

/** Builds the fixture jars unless the cache has this version of the sources; idempotent. */
export function buildJavaFixtures(log: (line: string) => void = () => undefined): Promise<FixtureBuild> {
  building ??= buildOnce(log).catch((error: unknown) => {
    building = undefined;
    throw error;
  });
  return building;
}

async function buildOnce(log: (line: string) => void): Promise<FixtureBuild> {
  const started = Date.now();
  const hash = await hashFiles(await sourceFiles());
  const dir = join(fixturesCacheDir, hash);
  if (await complete(dir)) return { dir, hash, built: false, buildMs: Date.now() - started };

  log(`java fixtures: building ${hash} (mvn package)`);
  await mkdir(fixturesCacheDir, { recursive: true });
  const work = await mkdtemp(join(fixturesCacheDir, `.build-${hash}-`));
  const stage = `${dir}.${process.pid}.tmp`;
  try {
    await cp(sourcesDir, work, {
      recursive: true,
      filter: (path) => !relative(sourcesDir, path).split('/').includes('target'),
    });
    await runCommand('mvn', ['-B', '-q', '-DskipTests', 'package'], work);
    await rm(stage, { recursive: true, force: true });
    await mkdir(stage, { recursive: true });
    await cp(join(work, 'api', 'target', 'fixture-api-1.0.0.jar'), join(stage, 'fixture-api.jar'));
    for (const name of Object.keys(MAIN_CLASSES)) {
      await mkdir(join(stage, name));
      await cp(join(work, name, 'target', `${name}.jar`), join(stage, name, `${name}.jar`));
      await cp(join(work, name, 'target', 'classpath.txt'), join(stage, name, 'classpath.txt'));
    }
    await cp(join(work, 'spring-eureka-app', 'target', 'spring-eureka-app.jar'), join(stage, 'spring-eureka-app.jar'));
    const buildMs = Date.now() - started;
    await writeFile(join(stage, 'build.json'), JSON.stringify({ hash, builtAt: new Date().toISOString(), buildMs }));
    await rm(dir, { recursive: true, force: true }); // an incomplete earlier one
    try {
      await rename(stage, dir);
    } catch (error) {
      if (!(await complete(dir))) throw error; // else another process won the race: use its build
    }
    log(`java fixtures: built in ${(buildMs / 1000).toFixed(1)} s`);
    return { dir, hash, built: true, buildMs };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(stage, { recursive: true, force: true });
  }
}

// ---- ZooKeeper and Eureka reads -------------------------------------------------------------

/** A short-lived ZooKeeper session for reads. */
export async function withZookeeper<T>(connect: string, work: (zk: ZkClient) => Promise<T>): Promise<T> {
  const zk = await ZkClient.connect(connect);
  try {
    return await work(zk);
  } finally {
    zk.close();
  }
}

interface EurekaInstance {
  instanceId: string;
  app: string;
  ipAddr: string;
  status: string;
  port: { $: number };
}

/** The instances Eureka lists for an application (empty when it has none). */
export async function eurekaInstances(app: string, eurekaUrl = defaultEureka): Promise<EurekaInstance[]> {
  const response = await fetch(`${eurekaUrl}/apps/${app.toUpperCase()}`, {
    headers: { Accept: 'application/json' },
    signal: AbortSignal.timeout(5_000),
  });
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`Eureka answered ${response.status}`);
  const body = (await response.json()) as { application?: { instance?: EurekaInstance | EurekaInstance[] } };
  const instances = body.application?.instance ?? [];
  return Array.isArray(instances) ? instances : [instances];
}

// ---- processes ------------------------------------------------------------------------------

const running = new Set<Handle>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test run ends without stopAllFixtures (the JVMs' watchdog covers a crash).
  process.once('exit', () => {
    for (const handle of running) {
      try {
        process.kill(handle.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

class Handle implements FixtureHandle {
  private exitCode: number | null | undefined;
  private readonly exit: Promise<void>;
  startMs = 0;

  constructor(
    readonly name: FixtureName,
    readonly app: string,
    readonly pid: number,
    readonly port: number,
    readonly ports: { dubbo?: number; http?: number },
    readonly logFile: string,
    child: ReturnType<typeof spawn>,
    home: string,
  ) {
    this.exit = new Promise((resolve) =>
      child.once('exit', (code) => {
        this.exitCode = code;
        running.delete(this);
        // Only Dubbo's file caches live there; the log file stays.
        void rm(home, { recursive: true, force: true }).finally(resolve);
      }),
    );
  }

  get url(): string | undefined {
    return this.ports.http === undefined ? undefined : `http://127.0.0.1:${this.ports.http}`;
  }

  exited(): boolean {
    return this.exitCode !== undefined;
  }

  async rssMiB(): Promise<number | undefined> {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${this.pid}/status`, 'utf8'));
      return match ? Math.round(Number(match[1]) / 1024) : undefined;
    } catch {
      return undefined;
    }
  }

  async stop(timeoutMs = 20_000): Promise<void> {
    if (this.exited()) return;
    this.signal('SIGTERM');
    const timedOut = await Promise.race([this.exit.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut) {
      this.signal('SIGKILL');
      await this.exit;
    }
  }

  private signal(signal: NodeJS.Signals): void {
    try {
      process.kill(this.pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Stops every fixture this process started, in parallel. */
export async function stopAllFixtures(): Promise<void> {
  await Promise.all([...running].map((handle) => handle.stop()));
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts one fixture and resolves when it is registered and serving; builds the jars first if needed. */
export async function startFixture(name: FixtureName, options: FixtureOptions = {}): Promise<FixtureHandle> {
  const build = await buildJavaFixtures();
  const app = options.app ?? `steward-${name}`;
  const zk = options.zookeeper ?? defaultZookeeper;
  const eurekaUrl = options.eurekaUrl ?? defaultEureka;
  const isProvider = name === 'dubbo3-provider' || name === 'dubbo27-provider';
  const isSpring = name === 'spring-eureka-app';
  const dubboEnabled = isProvider || (isSpring && options.dubbo !== false);
  const dubbo = dubboEnabled ? (options.port ?? (await freePort())) : undefined;
  const http = name === 'dubbo3-consumer' || isSpring ? (options.httpPort ?? (await freePort())) : undefined;
  const port = (isProvider ? dubbo : http)!;

  await mkdir(join(runDir, 'home'), { recursive: true });
  const logFile = join(runDir, `${name}-${app}-${port}.log`);
  const home = join(runDir, 'home', `${name}-${app}-${port}`);

  const jvm = [
    '-Xms32m',
    `-Xmx${isSpring ? 192 : 128}m`,
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1', // C1 only: faster start, less memory; these JVMs live for one test file
    '-Xss512k',
    `-Duser.home=${home}`, // Dubbo's file caches (~/.dubbo) stay under the run folder
    `-Dsteward.fixture=${name}`,
    '-Ddubbo.service.shutdown.wait=1000',
    ...(name === 'dubbo27-provider'
      ? ['--add-opens=java.base/java.lang=ALL-UNNAMED', '--add-opens=java.base/java.math=ALL-UNNAMED']
      : []),
    ...(options.jvmArgs ?? []),
  ];
  const args: string[] = [`--parent-pid=${process.pid}`];
  const opt = (key: string, value: string | number | undefined) => {
    if (value !== undefined && value !== '') args.push(`--${key}=${value}`);
  };
  let command: string[];
  if (isSpring) {
    command = [...jvm, '-jar', join(build.dir, 'spring-eureka-app.jar')];
    opt('spring.application.name', app);
    opt('server.port', http);
    opt('eureka.client.service-url.defaultZone', eurekaUrl);
    opt('steward.zookeeper', zk);
    if (dubboEnabled) opt('dubbo.protocol.port', dubbo);
    else args.push('--dubbo.enabled=false');
  } else {
    const moduleDir = join(build.dir, name);
    const classpath = [
      join(moduleDir, `${name}.jar`),
      join(build.dir, 'fixture-api.jar'),
      (await readFile(join(moduleDir, 'classpath.txt'), 'utf8')).trim(),
    ].join(':');
    command = [...jvm, '-cp', classpath, MAIN_CLASSES[name]];
    opt('zookeeper', zk);
    opt('app', app);
    opt('port', dubbo);
    opt('http-port', http);
    opt('register-mode', options.registerMode);
    opt('metadata-type', options.metadataType);
    opt('group', options.group);
    opt('warmup', options.warmupMs);
    opt('weight', options.weight);
    opt('interval-ms', options.intervalMs);
    opt('migration', options.migration);
  }
  args.push(...(options.args ?? []));

  const log = await open(logFile, 'a');
  await log.write(`\n==== ${new Date().toISOString()} starting: java ${[...command, ...args].join(' ')}\n`);
  const started = Date.now();
  const child = spawn('java', [...command, ...args], { cwd: runDir, stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  if (child.pid === undefined) throw new Error('could not spawn java');
  child.unref();
  const handle = new Handle(name, app, child.pid, port, { dubbo, http }, logFile, child, home);
  running.add(handle);
  installExitHook();

  const timeoutMs = options.startTimeoutMs ?? (isSpring ? 150_000 : 90_000);
  const ready = readiness(name, { app, zk, eurekaUrl, dubbo, http, registerMode: options.registerMode ?? 'all' });
  const deadline = started + timeoutMs;
  let lastProblem = 'no READY line yet';
  try {
    while (Date.now() < deadline) {
      if (handle.exited()) throw new Error(`${name} exited during start-up`);
      const problem = await ready(logFile).catch((error: Error) => error.message);
      if (problem === undefined) {
        handle.startMs = Date.now() - started;
        return handle;
      }
      lastProblem = problem;
      await sleep(250);
    }
    throw new Error(`${name} not ready within ${timeoutMs / 1000} s (${lastProblem})`);
  } catch (error) {
    await handle.stop(5_000);
    throw new Error(`${(error as Error).message}; last lines of ${logFile}:\n${await tail(logFile, 30)}`, { cause: error });
  }
}

interface ReadyContext {
  app: string;
  zk: string;
  eurekaUrl: string;
  dubbo?: number;
  http?: number;
  registerMode: 'all' | 'instance' | 'interface';
}

/** A check that resolves undefined when ready, else what is still missing. */
function readiness(name: FixtureName, c: ReadyContext): (logFile: string) => Promise<string | undefined> {
  let sawReady = false;
  return async (logFile) => {
    if (!sawReady) {
      sawReady = (await readFile(logFile, 'utf8')).includes('[steward-fixture] READY');
      if (!sawReady) return 'no READY line yet';
    }
    const address = `127.0.0.1:${c.dubbo}`;
    const zkMissing = async (iface: string, interfaceLevel: boolean, instanceLevel: boolean) =>
      withZookeeper(c.zk, async (zk) => {
        if (instanceLevel && !(await zk.stat(`/services/${c.app}/${address}`))) return `no /services/${c.app}/${address}`;
        if (interfaceLevel && !(await zk.providerUrls(iface)).some((url) => url.includes(`://${address}/`))) {
          return `no ${iface} provider at ${address}`;
        }
        return undefined;
      });
    switch (name) {
      case 'dubbo3-provider':
        return zkMissing(GREETINGS_SERVICE, c.registerMode !== 'instance', c.registerMode !== 'interface');
      case 'dubbo27-provider':
        return zkMissing(GREETINGS_SERVICE, true, false);
      case 'dubbo3-consumer': {
        const response = await fetch(`http://127.0.0.1:${c.http}/stats`, { signal: AbortSignal.timeout(2_000) });
        return response.ok ? undefined : `/stats answered ${response.status}`;
      }
      case 'spring-eureka-app': {
        const instances = await eurekaInstances(c.app, c.eurekaUrl);
        if (!instances.some((i) => i.port.$ === c.http && i.status === 'UP')) return `${c.app} not UP in Eureka`;
        return c.dubbo === undefined ? undefined : zkMissing(STOCK_SERVICE, true, true);
      }
    }
  };
}
