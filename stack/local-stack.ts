/**
 * The local real stack: ZooKeeper, Kafka (KRaft), a Eureka server and a MongoDB-wire server
 * (FerretDB), on loopback, started and stopped by this project alone.
 *
 * - Installs are idempotent and cached outside the work tree (`STEWARD_CACHE_DIR`, default
 *   ~/.cache/steward), so a second checkout or a CI clone on the same machine reuses them.
 * - Data, configuration, logs and pid files live under one ignored folder (`STACK_DIR`, default
 *   <repo>/.stack).
 * - A service counts as up only when it answers a real protocol request (the same probes the
 *   server's /readyz uses).
 * - `down` stops only processes whose command line names this stack's own data folder.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { probeEureka, probeKafka, probeMongo, probeZookeeper, type ProbeDetails } from '../src/health/dependency-probes.js';

const run = promisify(execFile);

export const SERVICE_NAMES = ['zookeeper', 'kafka', 'eureka', 'mongodb'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const FERRETDB_VERSION = 'v1.24.2';
const ZOOKEEPER_JARS = ['/usr/share/java/zookeeper.jar', '/usr/share/java/slf4j-simple.jar'];

export interface StackPorts {
  zookeeper: number;
  kafka: number;
  kafkaController: number;
  eureka: number;
  mongodb: number;
}

export interface StackOptions {
  repoDir: string;
  stackDir: string;
  cacheDir: string;
  ports: StackPorts;
  log: (line: string) => void;
}

export interface ServiceStatus {
  name: ServiceName;
  state: 'up' | 'unhealthy' | 'stopped' | 'foreign';
  port: number;
  pid?: number;
  rssMiB?: number;
  details?: ProbeDetails;
  error?: string;
}

interface PidRecord {
  pid: number;
  port: number;
  startedAt: string;
}

interface ServiceSpec {
  port: number;
  startTimeoutMs: number;
  install(): Promise<void>;
  /** Writes configuration and initialises storage; returns the command to run. */
  prepare(dataDir: string): Promise<{ command: string; args: string[] }>;
  probe(timeoutMs: number): Promise<ProbeDetails>;
}

function envPort(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name} must be a port number, got "${raw}"`);
  return port;
}

export function defaultOptions(log: (line: string) => void = console.log): StackOptions {
  const repoDir = dirname(dirname(fileURLToPath(import.meta.url)));
  return {
    repoDir,
    stackDir: process.env.STACK_DIR ?? join(repoDir, '.stack'),
    cacheDir: process.env.STEWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'steward'),
    ports: {
      zookeeper: envPort('STACK_ZOOKEEPER_PORT', 2181),
      kafka: envPort('STACK_KAFKA_PORT', 9092),
      kafkaController: envPort('STACK_KAFKA_CONTROLLER_PORT', 9093),
      eureka: envPort('STACK_EUREKA_PORT', 8761),
      mongodb: envPort('STACK_MONGODB_PORT', 27017),
    },
    log,
  };
}

/** The environment a Steward server needs to use this stack. */
export interface StackServerEnv {
  MONGODB_URI: string;
  KAFKA_BROKERS: string;
  ZOOKEEPER_CONNECT: string;
  EUREKA_URLS: string;
}

export function serverEnv(ports: StackPorts): StackServerEnv {
  return {
    MONGODB_URI: `mongodb://127.0.0.1:${ports.mongodb}/steward`,
    KAFKA_BROKERS: `127.0.0.1:${ports.kafka}`,
    ZOOKEEPER_CONNECT: `127.0.0.1:${ports.zookeeper}`,
    EUREKA_URLS: `http://127.0.0.1:${ports.eureka}/eureka`,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function hashFiles(paths: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const path of paths.sort()) {
    hash.update(path);
    hash.update(await readFile(path));
  }
  return hash.digest('hex').slice(0, 16);
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function commandOutput(command: string, args: string[], cwd?: string, env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(command, args, { cwd, env: env ?? process.env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${output}`, { cause: error });
  }
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export class LocalStack {
  private readonly specs: Record<ServiceName, ServiceSpec>;

  constructor(readonly options: StackOptions) {
    this.specs = {
      zookeeper: this.zookeeper(),
      kafka: this.kafka(),
      eureka: this.eureka(),
      mongodb: this.mongodb(),
    };
  }

  private dataDir(name: ServiceName) {
    return join(this.options.stackDir, 'data', name);
  }
  private logFile(name: ServiceName) {
    return join(this.options.stackDir, 'logs', `${name}.log`);
  }
  private pidFile(name: ServiceName) {
    return join(this.options.stackDir, 'run', `${name}.json`);
  }

  /** Installs and starts the named services (all by default) in parallel; harmless when already up. */
  async up(names: readonly ServiceName[] = SERVICE_NAMES): Promise<void> {
    const results = await Promise.allSettled(names.map((name) => this.upOne(name)));
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [`${names[i]}: ${(r.reason as Error).message}`] : []));
    if (failures.length > 0) throw new Error(`stack up failed:\n${failures.join('\n')}`);
  }

  async down(names: readonly ServiceName[] = SERVICE_NAMES): Promise<void> {
    await Promise.all(names.map((name) => this.downOne(name)));
  }

  async status(names: readonly ServiceName[] = SERVICE_NAMES): Promise<ServiceStatus[]> {
    return Promise.all(names.map((name) => this.statusOne(name)));
  }

  private async upOne(name: ServiceName): Promise<void> {
    const spec = this.specs[name];
    const started = Date.now();
    const running = await this.ownedPid(name);
    if (running !== undefined) {
      await this.waitUntilUp(name, running, spec);
      this.options.log(`${name}: already running (pid ${running}, port ${spec.port})`);
      return;
    }
    if (await portInUse(spec.port)) {
      throw new Error(
        `port ${spec.port} is taken by a process this stack did not start; stop it or set STACK_${name.toUpperCase()}_PORT`,
      );
    }
    await spec.install();
    const dataDir = this.dataDir(name);
    await mkdir(dataDir, { recursive: true });
    await mkdir(dirname(this.logFile(name)), { recursive: true });
    await mkdir(dirname(this.pidFile(name)), { recursive: true });
    const { command, args } = await spec.prepare(dataDir);

    const log = await open(this.logFile(name), 'a');
    await log.write(`\n==== ${new Date().toISOString()} starting: ${command} ${args.join(' ')}\n`);
    const child = spawn(command, args, { cwd: dataDir, detached: true, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not spawn ${command}`);
    child.unref();
    const record: PidRecord = { pid, port: spec.port, startedAt: new Date().toISOString() };
    await writeFile(this.pidFile(name), JSON.stringify(record));
    try {
      await this.waitUntilUp(name, pid, spec);
    } catch (error) {
      await this.downOne(name);
      throw error;
    }
    this.options.log(`${name}: up on 127.0.0.1:${spec.port} (pid ${pid}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  private async waitUntilUp(name: ServiceName, pid: number, spec: ServiceSpec): Promise<ProbeDetails> {
    const deadline = Date.now() + spec.startTimeoutMs;
    let lastError = 'no answer yet';
    while (Date.now() < deadline) {
      if (!isAlive(pid)) {
        throw new Error(`exited during start-up; last lines of ${this.logFile(name)}:\n${await tail(this.logFile(name), 25)}`);
      }
      try {
        return await spec.probe(5_000);
      } catch (error) {
        lastError = (error as Error).message;
      }
      await sleep(300);
    }
    throw new Error(
      `did not answer within ${spec.startTimeoutMs / 1000} s (${lastError}); last lines of ${this.logFile(name)}:\n${await tail(this.logFile(name), 25)}`,
    );
  }

  /** The pid from our pid file, if that process is alive and really is ours. */
  private async ownedPid(name: ServiceName): Promise<number | undefined> {
    let record: PidRecord;
    try {
      record = JSON.parse(await readFile(this.pidFile(name), 'utf8')) as PidRecord;
    } catch {
      return undefined;
    }
    if (isAlive(record.pid) && (await this.isOurs(name, record.pid))) return record.pid;
    await rm(this.pidFile(name), { force: true });
    return undefined;
  }

  /** Every command line we start names the service's data folder: a recycled pid will not. */
  private async isOurs(name: ServiceName, pid: number): Promise<boolean> {
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
      return cmdline.includes(this.dataDir(name));
    } catch {
      return false;
    }
  }

  private async downOne(name: ServiceName): Promise<void> {
    const pid = await this.ownedPid(name);
    if (pid === undefined) {
      this.options.log(`${name}: not running`);
      return;
    }
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-pid, signal); // the whole process group: wrappers and their children
      } catch {
        try {
          process.kill(pid, signal);
        } catch {
          /* already gone */
        }
      }
    };
    signalGroup('SIGTERM');
    const deadline = Date.now() + 30_000;
    while (isAlive(pid) && Date.now() < deadline) await sleep(100);
    if (isAlive(pid)) {
      this.options.log(`${name}: did not stop within 30 s, killing`);
      signalGroup('SIGKILL');
      while (isAlive(pid)) await sleep(50);
    }
    await rm(this.pidFile(name), { force: true });
    this.options.log(`${name}: stopped (pid ${pid})`);
  }

  private async statusOne(name: ServiceName): Promise<ServiceStatus> {
    const spec = this.specs[name];
    const pid = await this.ownedPid(name);
    const base: ServiceStatus = { name, state: 'stopped', port: spec.port };
    if (pid === undefined) {
      return (await portInUse(spec.port))
        ? { ...base, state: 'foreign', error: 'port taken by a process this stack did not start' }
        : base;
    }
    const rssMiB = await this.rss(pid);
    try {
      const details = await spec.probe(5_000);
      return { ...base, state: 'up', pid, rssMiB, details };
    } catch (error) {
      return { ...base, state: 'unhealthy', pid, rssMiB, error: (error as Error).message };
    }
  }

  private async rss(pid: number): Promise<number | undefined> {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
      return match ? Math.round(Number(match[1]) / 1024) : undefined;
    } catch {
      return undefined;
    }
  }

  // ---- the four services -------------------------------------------------------------------

  private zookeeper(): ServiceSpec {
    const port = this.options.ports.zookeeper;
    return {
      port,
      startTimeoutMs: 60_000,
      install: async () => {
        if (ZOOKEEPER_JARS.every((jar) => existsSync(jar))) return;
        this.options.log('zookeeper: installing the Debian package (apt-get)');
        const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
        const apt = (args: string[]) => {
          const [command, ...rest] = [...sudo, 'apt-get', ...args];
          return commandOutput(command!, rest, undefined, { ...process.env, DEBIAN_FRONTEND: 'noninteractive' });
        };
        try {
          await apt(['install', '-y', '-q', 'zookeeper']);
        } catch {
          await apt(['update', '-q']);
          await apt(['install', '-y', '-q', 'zookeeper']);
        }
      },
      prepare: async (dataDir) => {
        const config = join(dataDir, 'zoo.cfg');
        await writeFile(
          config,
          [
            'tickTime=1000',
            'initLimit=10',
            'syncLimit=5',
            `dataDir=${join(dataDir, 'data')}`,
            `clientPort=${port}`,
            'clientPortAddress=127.0.0.1',
            'maxClientCnxns=0',
            // Sessions between 2 s and 60 s: tests may ask for short ones to see ephemeral nodes expire.
            'minSessionTimeout=2000',
            'maxSessionTimeout=60000',
            'admin.enableServer=false',
            '4lw.commands.whitelist=*',
            '',
          ].join('\n'),
        );
        return {
          command: 'java',
          args: [
            '-Xms64m',
            '-Xmx256m',
            '-XX:+UseSerialGC',
            '-cp',
            ZOOKEEPER_JARS.join(':'),
            'org.apache.zookeeper.server.quorum.QuorumPeerMain',
            config,
          ],
        };
      },
      probe: (timeoutMs) => probeZookeeper(`127.0.0.1:${port}`, { timeoutMs }),
    };
  }

  private kafka(): ServiceSpec {
    const { kafka: port, kafkaController: controllerPort } = this.options.ports;
    const moduleDir = join(this.options.repoDir, 'stack', 'kafka');
    let classpath = '';
    return {
      port,
      startTimeoutMs: 90_000,
      install: async () => {
        const key = await hashFiles([join(moduleDir, 'pom.xml')]);
        const cached = join(this.options.cacheDir, 'kafka', key, 'classpath.txt');
        if (existsSync(cached)) {
          const text = (await readFile(cached, 'utf8')).trim();
          if (text.split(':').every((jar) => existsSync(jar))) {
            classpath = text;
            return;
          }
        }
        this.options.log('kafka: resolving the broker from Maven Central (mvn)');
        await mkdir(dirname(cached), { recursive: true });
        const partial = `${cached}.${process.pid}`;
        await commandOutput('mvn', [
          '-B',
          '-q',
          '-f',
          join(moduleDir, 'pom.xml'),
          'dependency:build-classpath',
          `-Dmdep.outputFile=${partial}`,
        ]);
        await rename(partial, cached);
        classpath = (await readFile(cached, 'utf8')).trim();
      },
      prepare: async (dataDir) => {
        const logDir = join(dataDir, 'kraft');
        const properties = join(dataDir, 'server.properties');
        const log4j = join(dataDir, 'log4j2.properties');
        await writeFile(
          properties,
          [
            'process.roles=broker,controller',
            'node.id=1',
            `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
            `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
            `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
            'controller.listener.names=CONTROLLER',
            'inter.broker.listener.name=PLAINTEXT',
            'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
            `log.dirs=${logDir}`,
            'num.partitions=3',
            'auto.create.topics.enable=true',
            'offsets.topic.replication.factor=1',
            'offsets.topic.num.partitions=10',
            'transaction.state.log.replication.factor=1',
            'transaction.state.log.min.isr=1',
            'share.coordinator.state.topic.replication.factor=1',
            'share.coordinator.state.topic.min.isr=1',
            // A single local broker: consumer groups should not wait 3 s for more members.
            'group.initial.rebalance.delay.ms=0',
            '',
          ].join('\n'),
        );
        await writeFile(
          log4j,
          [
            'status = warn',
            'appender.out.type = Console',
            'appender.out.name = OUT',
            'appender.out.layout.type = PatternLayout',
            'appender.out.layout.pattern = [%d] %p %m (%c)%n',
            'rootLogger.level = INFO',
            'rootLogger.appenderRef.out.ref = OUT',
            'logger.state.name = state.change.logger',
            'logger.state.level = WARN',
            '',
          ].join('\n'),
        );
        if (!existsSync(join(logDir, 'meta.properties'))) {
          const clusterId = randomBytes(16).toString('base64url');
          await commandOutput('java', [
            '-cp',
            classpath,
            `-Dlog4j2.configurationFile=${log4j}`,
            'kafka.tools.StorageTool',
            'format',
            '-t',
            clusterId,
            '-c',
            properties,
          ]);
        }
        return {
          command: 'java',
          args: [
            '-Xms128m',
            '-Xmx512m',
            '-XX:+UseG1GC',
            '-Djava.awt.headless=true',
            `-Dlog4j2.configurationFile=${log4j}`,
            '-cp',
            classpath,
            'kafka.Kafka',
            properties,
          ],
        };
      },
      probe: (timeoutMs) => probeKafka([`127.0.0.1:${port}`], { timeoutMs }, 'steward-stack'),
    };
  }

  private eureka(): ServiceSpec {
    const port = this.options.ports.eureka;
    const moduleDir = join(this.options.repoDir, 'stack', 'eureka');
    let jar = '';
    return {
      port,
      startTimeoutMs: 120_000,
      install: async () => {
        const sources = [join(moduleDir, 'pom.xml'), ...(await listFiles(join(moduleDir, 'src')))];
        const key = await hashFiles(sources);
        jar = join(this.options.cacheDir, 'eureka', key, 'eureka-server.jar');
        if (existsSync(jar)) return;
        this.options.log('eureka: building the Eureka server (mvn package)');
        await commandOutput('mvn', ['-B', '-q', '-f', join(moduleDir, 'pom.xml'), '-DskipTests', 'package']);
        await mkdir(dirname(jar), { recursive: true });
        await cp(join(moduleDir, 'target', 'eureka-server.jar'), `${jar}.${process.pid}`);
        await rename(`${jar}.${process.pid}`, jar);
      },
      prepare: (dataDir) =>
        Promise.resolve({
          command: 'java',
          args: [
            '-Xms64m',
            '-Xmx768m',
            '-XX:+UseSerialGC',
            `-Dsteward.stack.dir=${dataDir}`,
            '-jar',
            jar,
            `--server.port=${port}`,
            '--server.address=127.0.0.1',
          ],
        }),
      probe: (timeoutMs) => probeEureka([`http://127.0.0.1:${port}/eureka`], { timeoutMs }),
    };
  }

  private mongodb(): ServiceSpec {
    const port = this.options.ports.mongodb;
    const binary = join(this.options.cacheDir, 'ferretdb', FERRETDB_VERSION, 'ferretdb');
    return {
      port,
      startTimeoutMs: 30_000,
      install: async () => {
        if (existsSync(binary)) return;
        this.options.log(`mongodb: building FerretDB ${FERRETDB_VERSION} (go)`);
        // `go install …@v1.24.2` builds, but the binary panics at start: the module zip lacks the
        // build/version/version.txt that FerretDB's own build generates. So: the same module from
        // the Go proxy, built with that one file filled in.
        const env = { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' };
        const info = JSON.parse(
          await commandOutput(
            'go',
            ['mod', 'download', '-json', `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`],
            tmpdir(),
            env,
          ),
        ) as { Dir: string };
        const work = await mkdtemp(join(tmpdir(), 'ferretdb-build-'));
        try {
          await cp(info.Dir, work, { recursive: true, mode: 0 });
          await run('chmod', ['-R', 'u+w', work]);
          await writeFile(join(work, 'build', 'version', 'version.txt'), `${FERRETDB_VERSION}\n`);
          await mkdir(dirname(binary), { recursive: true });
          await commandOutput('go', ['build', '-trimpath', '-o', `${binary}.${process.pid}`, './cmd/ferretdb'], work, env);
          await rename(`${binary}.${process.pid}`, binary);
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      },
      prepare: async (dataDir) => {
        await mkdir(join(dataDir, 'sqlite'), { recursive: true });
        await mkdir(join(dataDir, 'state'), { recursive: true });
        return {
          command: binary,
          args: [
            `--listen-addr=127.0.0.1:${port}`,
            '--handler=sqlite',
            `--sqlite-url=file:${join(dataDir, 'sqlite')}/`,
            `--state-dir=${join(dataDir, 'state')}`,
            '--debug-addr=-',
            '--telemetry=disable',
            '--log-level=warn',
            '--log-format=text',
          ],
        };
      },
      probe: (timeoutMs) => probeMongo(`mongodb://127.0.0.1:${port}/`, { timeoutMs }),
    };
  }
}
