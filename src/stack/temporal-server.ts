import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { dropDatabase } from '../db/database';
import { operatorSearchAttributeArgs, SEARCH_ATTRIBUTES } from '../temporal/search-attributes';
import { REPO_ROOT } from './paths';
import { freePort, portIsFree, spawnServer, StartupError, tail, waitUntilReady, type ManagedProcess } from './process';
import { serverPath, SetupError, temporalServerModuleDir } from './servers';

/**
 * The production topology's Temporal: the full server (`temporal-server`, the release the
 * pinned CLI embeds) on PostgreSQL, set up the way docker-compose does it. The schema is
 * applied by deploy/temporal-schema.sh (docker-compose's temporal-schema service) with the
 * pinned temporal-sql-tool and the module's own schema folder; the namespace and search
 * attributes by deploy/temporal-namespace.sh (its temporal-search-attributes service) with
 * the pinned CLI. Only the server config is derived here, from the module's
 * `config/development-postgres12.yaml`, every listener on 127.0.0.1 and a port given.
 */

/** The SQL plugin of both of Temporal's databases, here and in docker-compose. */
export const TEMPORAL_SQL_PLUGIN = 'postgres12';

/** The scripts docker-compose's temporal-schema and temporal-search-attributes services run, relative to the repository. */
export const TEMPORAL_SETUP_SCRIPTS = { schema: 'deploy/temporal-schema.sh', namespace: 'deploy/temporal-namespace.sh' } as const;

/** Every port the server listens on: one process runs all four services. */
export interface TemporalServerPorts {
  readonly frontend: number;
  readonly frontendMembership: number;
  /** The frontend's HTTP API. */
  readonly http: number;
  readonly history: number;
  readonly historyMembership: number;
  readonly matching: number;
  readonly matchingMembership: number;
  readonly worker: number;
  readonly workerMembership: number;
  /** Prometheus `/metrics`. */
  readonly metrics: number;
  readonly pprof: number;
}

export interface TemporalServerOptions {
  /**
   * A PostgreSQL URL whose user may create databases (locally, the owner's DATABASE_URL);
   * its database name is ignored: Temporal gets two of its own.
   */
  readonly databaseUrl: string;
  /** Names those databases `temporal_<suffix>` and `temporal_visibility_<suffix>`. */
  readonly suffix: string;
  readonly namespace: string;
  readonly toolsDir: string;
  /** Where the server's config and dynamic config go. */
  readonly dir: string;
  /** Where its logs go (default `dir`). */
  readonly logDir?: string;
  /** Ports to use; every one not given is a free one picked now. */
  readonly ports?: Partial<TemporalServerPorts>;
  readonly env?: NodeJS.ProcessEnv;
}

export interface TemporalServer {
  /** The frontend's `host:port`, for TEMPORAL_ADDRESS. */
  readonly address: string;
  readonly ports: TemporalServerPorts;
  /** The URLs of Temporal's two databases (persistence, visibility). */
  readonly databases: { readonly persistence: string; readonly visibility: string };
  readonly process: ManagedProcess;
  /** Stops the server; its databases stay. */
  stop(): Promise<void>;
  /** Stops the server and drops both databases. */
  destroy(): Promise<void>;
}

/** The database names for a suffix: letters, digits and underscores only. */
export function temporalDatabaseNames(suffix: string): { persistence: string; visibility: string } {
  const safe = suffix.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return { persistence: `temporal_${safe}`, visibility: `temporal_visibility_${safe}` };
}

/** The binaries and module source the full server needs, or a SetupError naming what is missing. */
export function temporalServerTools(toolsDir: string, env: NodeJS.ProcessEnv = process.env) {
  const tools = {
    server: serverPath('temporalServer', toolsDir, env),
    sqlTool: serverPath('temporalSqlTool', toolsDir, env),
    cli: serverPath('temporal', toolsDir, env),
  };
  const missing = Object.values(tools).filter((file) => !existsSync(file));
  if (missing.length > 0) {
    throw new SetupError(`not built: ${missing.join(', ')}; run \`npm run setup\` (or set TEMPORAL_SERVER_PATH, TEMPORAL_SQL_TOOL_PATH, TEMPORAL_CLI_PATH)`);
  }
  const moduleDir = temporalServerModuleDir(env);
  if (!moduleDir) throw new SetupError('the go.temporal.io/server module source (schema and config) is not in the Go module cache; run `npm run setup`');
  return { ...tools, moduleDir };
}

/** The services' ports: the server records them in `cluster_membership`, whose port columns are smallint. */
const MEMBERSHIP_RECORDED: readonly (keyof TemporalServerPorts)[] = ['frontend', 'frontendMembership', 'history', 'historyMembership', 'matching', 'matchingMembership', 'worker', 'workerMembership'];
const MAX_RECORDED_PORT = 32_767;

/** A free loopback port at most MAX_RECORDED_PORT: below the ephemeral range the OS hands out. */
export async function freeRecordablePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 10_000 + Math.floor(Math.random() * (MAX_RECORDED_PORT - 10_000));
    if (await portIsFree(port)) return port;
  }
  throw new StartupError(`no free port between 10000 and ${MAX_RECORDED_PORT} for the Temporal server`);
}

async function allocatePorts(given: Partial<TemporalServerPorts>): Promise<TemporalServerPorts> {
  for (const name of MEMBERSHIP_RECORDED) {
    const port = given[name];
    if (port !== undefined && port > MAX_RECORDED_PORT) throw new StartupError(`the Temporal server's ${name} port must be at most ${MAX_RECORDED_PORT} (it stores it as smallint), not ${port}`);
  }
  const names: (keyof TemporalServerPorts)[] = ['frontend', 'frontendMembership', 'http', 'history', 'historyMembership', 'matching', 'matchingMembership', 'worker', 'workerMembership', 'metrics', 'pprof'];
  const entries = await Promise.all(names.map(async (name) => [name, given[name] ?? (MEMBERSHIP_RECORDED.includes(name) ? await freeRecordablePort() : await freePort())] as const));
  const ports = Object.fromEntries(entries) as unknown as TemporalServerPorts;
  if (new Set(Object.values(ports)).size !== names.length) return allocatePorts(given);
  return ports;
}

interface PostgresTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
}

function postgresTarget(databaseUrl: string): PostgresTarget {
  const url = new URL(databaseUrl);
  return {
    host: url.hostname || '127.0.0.1',
    port: Number(url.port || 5432),
    // As libpq does without a user name: the operating-system user.
    user: decodeURIComponent(url.username) || os.userInfo().username,
    password: decodeURIComponent(url.password),
  };
}

function withDatabase(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * The server config: the module's `config/development-postgres12.yaml` with our databases,
 * credentials, ports and 127.0.0.1 everywhere, and the dynamic config at `dynamicConfigFile`.
 */
export function temporalServerConfig(
  template: string,
  options: { ports: TemporalServerPorts; postgres: PostgresTarget; databases: { persistence: string; visibility: string }; dynamicConfigFile: string },
): Record<string, unknown> {
  const config = parse(template) as any;
  const { ports, postgres, databases } = options;
  config.log = { ...config.log, level: 'warn' };
  for (const [store, database] of [
    ['postgres-default', databases.persistence],
    ['postgres-visibility', databases.visibility],
  ] as const) {
    const sql = config.persistence.datastores[store].sql;
    Object.assign(sql, { databaseName: database, connectAddr: `${postgres.host}:${postgres.port}`, user: postgres.user, password: postgres.password });
  }
  config.global.membership.broadcastAddress = '127.0.0.1';
  config.global.pprof.port = ports.pprof;
  config.global.metrics.prometheus.listenAddress = `127.0.0.1:${ports.metrics}`;
  const services: Record<string, [number, number]> = {
    frontend: [ports.frontend, ports.frontendMembership],
    history: [ports.history, ports.historyMembership],
    matching: [ports.matching, ports.matchingMembership],
    worker: [ports.worker, ports.workerMembership],
  };
  for (const [name, [grpcPort, membershipPort]] of Object.entries(services)) {
    const rpc = config.services[name].rpc;
    delete rpc.bindOnLocalHost;
    Object.assign(rpc, { grpcPort, membershipPort, bindOnIP: '127.0.0.1' });
  }
  config.services.frontend.rpc.httpPort = ports.http;
  config.clusterMetadata.clusterInformation.active.rpcAddress = `127.0.0.1:${ports.frontend}`;
  config.dynamicConfigClient = { ...config.dynamicConfigClient, filepath: options.dynamicConfigFile };
  return config;
}

/**
 * The module's `config/dynamicconfig/development-sql.yaml`, plus what the dev server sets by
 * default: search attributes visible as soon as they are created (deploy/temporal-namespace.sh
 * registers them moments before the first workflow upserts one), with the persistence QPS
 * raised to match, as the CLI does.
 */
export function temporalDynamicConfig(template: string, frontendHttp: number): Record<string, unknown> {
  const config = (parse(template) ?? {}) as Record<string, unknown>;
  const value = (v: unknown) => [{ value: v, constraints: {} }];
  return {
    ...config,
    'system.forceSearchAttributesCacheRefreshOnRead': value(true),
    'frontend.persistenceMaxQPS': value(10_000),
    'history.persistenceMaxQPS': value(45_000),
    'component.nexusoperations.callback.endpoint.template': value(`http://127.0.0.1:${frontendHttp}/namespaces/{{.NamespaceName}}/nexus/callback`),
  };
}

/** Runs a deploy/ script with `env`, its output appended to `logFile`; rejects naming the script and the log's end. */
function runScript(script: string, args: readonly string[], env: NodeJS.ProcessEnv, logFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', [path.join(REPO_ROOT, script), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', (err) => reject(new StartupError(`${script}: ${err.message}`)));
    child.on('exit', (code) => {
      writeFileSync(logFile, out, { flag: 'a' });
      if (code === 0) resolve();
      else reject(new StartupError(`${script} failed with exit code ${code}; end of ${logFile}:\n${tail(logFile)}`));
    });
  });
}

/**
 * Applies Temporal's schema to its two databases (creating them if needed) exactly as
 * docker-compose's temporal-schema service does: deploy/temporal-schema.sh, here with the
 * pinned temporal-sql-tool and the module's schema folder.
 */
export async function setUpTemporalSchema(options: { databaseUrl: string; databases: { persistence: string; visibility: string }; sqlTool: string; moduleDir: string; logFile: string; env?: NodeJS.ProcessEnv }): Promise<void> {
  await runScript(TEMPORAL_SETUP_SCRIPTS.schema, [], { ...(options.env ?? process.env), ...temporalSchemaEnv(options) }, options.logFile);
}

/**
 * What deploy/temporal-schema.sh gets here: docker-compose's temporal-schema variables, plus
 * where the pinned tool and the module's schema are (the admin-tools image has both built in).
 */
export function temporalSchemaEnv(options: { databaseUrl: string; databases: { persistence: string; visibility: string }; sqlTool: string; moduleDir: string }): Record<string, string> {
  const postgres = postgresTarget(options.databaseUrl);
  return {
    SQL_PLUGIN: TEMPORAL_SQL_PLUGIN,
    SQL_HOST: postgres.host,
    SQL_PORT: String(postgres.port),
    SQL_USER: postgres.user,
    SQL_PASSWORD: postgres.password,
    TEMPORAL_DB: options.databases.persistence,
    TEMPORAL_VISIBILITY_DB: options.databases.visibility,
    TEMPORAL_SCHEMA_DIR: path.join(options.moduleDir, 'schema'),
    TEMPORAL_SQL_TOOL: options.sqlTool,
  };
}

/** What deploy/temporal-namespace.sh gets here: docker-compose's variables (no TLS locally), plus the pinned CLI. */
export function temporalNamespaceEnv(options: { address: string; namespace: string; cli: string }): Record<string, string> {
  return { TEMPORAL_ADDRESS: options.address, TEMPORAL_NAMESPACE: options.namespace, TLS_FLAGS: '', TEMPORAL_CLI: options.cli };
}

/**
 * Registers the namespace and every search attribute of SEARCH_ATTRIBUTES, as
 * docker-compose's temporal-search-attributes service does (deploy/temporal-namespace.sh),
 * then waits until the frontend lists them all.
 */
export async function registerTemporalNamespace(options: { address: string; namespace: string; cli: string; logFile: string; env?: NodeJS.ProcessEnv }): Promise<void> {
  await runScript(TEMPORAL_SETUP_SCRIPTS.namespace, operatorSearchAttributeArgs(), { ...(options.env ?? process.env), ...temporalNamespaceEnv(options) }, options.logFile);
  const connection = await Connection.connect({ address: options.address });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await connection.workflowService.describeNamespace({ namespace: options.namespace });
        const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: options.namespace });
        const missing = Object.values(SEARCH_ATTRIBUTES).filter((key) => !(key.name in (customAttributes ?? {})));
        if (missing.length === 0) return;
        if (Date.now() > deadline) throw new StartupError(`search attributes not registered: ${missing.map((k) => k.name).join(', ')}`);
      } catch (err) {
        if (err instanceof StartupError || Date.now() > deadline) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await connection.close();
  }
}

async function serving(address: string): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    const { status } = await connection.healthService.check({});
    // 1 is SERVING in grpc.health.v1.
    if (status !== 1) throw new Error(`health ${status}`);
    await connection.workflowService.getSystemInfo({});
  } finally {
    await connection.close();
  }
}

/**
 * Sets up and starts the full Temporal server on PostgreSQL: its databases and schema, a
 * config derived from the module's, the server process (its log in `dir`), health, then the
 * namespace and search attributes. Fails at once, naming `npm run setup`, when a binary or
 * the module source is missing: the server is never built here.
 */
export async function startTemporalServer(options: TemporalServerOptions): Promise<TemporalServer> {
  const env = options.env ?? process.env;
  const tools = temporalServerTools(options.toolsDir, env);
  const names = temporalDatabaseNames(options.suffix);
  const databases = { persistence: withDatabase(options.databaseUrl, names.persistence), visibility: withDatabase(options.databaseUrl, names.visibility) };
  const ports = await allocatePorts(options.ports ?? {});
  const configDir = path.join(options.dir, 'config');
  mkdirSync(configDir, { recursive: true });
  const logDir = options.logDir ?? options.dir;
  mkdirSync(logDir, { recursive: true });
  const setupLog = path.join(logDir, 'temporal-setup.log');

  await setUpTemporalSchema({ databaseUrl: options.databaseUrl, databases: names, sqlTool: tools.sqlTool, moduleDir: tools.moduleDir, logFile: setupLog, env });

  const dynamicConfigFile = path.join(configDir, 'dynamicconfig.yaml');
  writeFileSync(dynamicConfigFile, stringify(temporalDynamicConfig(readFileSync(path.join(tools.moduleDir, 'config/dynamicconfig/development-sql.yaml'), 'utf8'), ports.http)));
  const config = temporalServerConfig(readFileSync(path.join(tools.moduleDir, 'config/development-postgres12.yaml'), 'utf8'), {
    ports,
    postgres: postgresTarget(options.databaseUrl),
    databases: names,
    dynamicConfigFile,
  });
  // It holds the database password: readable by this user only.
  writeFileSync(path.join(configDir, 'ledgerlock.yaml'), stringify(config), { mode: 0o600 });

  const server = spawnServer({
    name: 'temporal-server',
    command: tools.server,
    args: ['--root', options.dir, '--config', 'config', '--env', 'ledgerlock', '--allow-no-auth', 'start'],
    env,
    logDir,
  });
  const address = `127.0.0.1:${ports.frontend}`;
  const stop = () => server.stop(10_000);
  try {
    await waitUntilReady(server, () => serving(address), 120_000);
    await registerTemporalNamespace({ address, namespace: options.namespace, cli: tools.cli, logFile: setupLog, env });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    address,
    ports,
    databases,
    process: server,
    stop,
    async destroy() {
      await stop();
      await dropDatabase(databases.persistence);
      await dropDatabase(databases.visibility);
    },
  };
}
