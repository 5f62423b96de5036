import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ownerDatabaseUrl, type Config } from '../config/config';
import { devServerSearchAttributeArgs } from '../temporal/search-attributes';
import { serverPath, type ServerName } from './servers';
import { CODEC_PATH_PREFIX } from './ui-proxy';
import { freePort, portIsFree, spawnServer, tcpProbe, waitUntilReady, type ManagedProcess } from './process';
import { startTemporalServer } from './temporal-server';

/** Every port variable of a local stack (`npm start`): the API, its servers, the codec server and the metrics listener. */
export const LOCAL_PORT_VARIABLES = [
  'API_PORT',
  'CODEC_PORT',
  'METRICS_PORT',
  'TEMPORAL_PORT',
  'TEMPORAL_UI_PORT',
  'TEMPORAL_UI_BACKEND_PORT',
  'TEMPORAL_HTTP_PORT',
  'TEMPORAL_METRICS_PORT',
  'KMS_PORT',
  'STRIPE_MOCK_PORT',
] as const;
export type LocalPortVariable = (typeof LOCAL_PORT_VARIABLES)[number];

/**
 * One free loopback port for each of `LOCAL_PORT_VARIABLES`, as environment: a second stack
 * (a test, a benchmark, another checkout) never meets the first one's ports.
 */
export async function freeLocalPorts(): Promise<Record<LocalPortVariable, string>> {
  const ports = await Promise.all(LOCAL_PORT_VARIABLES.map(() => freePort()));
  return Object.fromEntries(LOCAL_PORT_VARIABLES.map((variable, i) => [variable, String(ports[i])])) as Record<LocalPortVariable, string>;
}

export class PortInUseError extends Error {
  override name = 'PortInUseError';
}

interface PlannedServer {
  /** The pinned binaries to build first. */
  readonly builds: readonly ServerName[];
  readonly label: string;
  readonly ports: readonly { port: number; variable: string; what: string }[];
}

/** The servers `config` says this process should run itself, and the ports each needs. */
export function plannedServers(config: Config): PlannedServer[] {
  const planned: PlannedServer[] = [];
  const dev = config.temporal.devServer;
  if (dev) {
    planned.push({
      builds: ['temporal'],
      label: 'Temporal dev server',
      ports: [
        { port: dev.port, variable: 'TEMPORAL_PORT', what: 'Temporal gRPC' },
        { port: dev.uiBackendPort, variable: 'TEMPORAL_UI_BACKEND_PORT', what: "the dev server's own Web UI" },
        { port: dev.httpPort, variable: 'TEMPORAL_HTTP_PORT', what: 'Temporal HTTP API' },
        { port: dev.metricsPort, variable: 'TEMPORAL_METRICS_PORT', what: 'Temporal metrics' },
      ],
    });
  }
  const full = config.temporal.fullServer;
  if (full) {
    planned.push({
      // The CLI registers the namespace and search attributes.
      builds: ['temporalServer', 'temporalSqlTool', 'temporal'],
      label: 'Temporal server',
      ports: [
        { port: full.port, variable: 'TEMPORAL_PORT', what: 'Temporal gRPC' },
        { port: full.httpPort, variable: 'TEMPORAL_HTTP_PORT', what: 'Temporal HTTP API' },
        { port: full.metricsPort, variable: 'TEMPORAL_METRICS_PORT', what: 'Temporal metrics' },
      ],
    });
  }
  if (config.kms.local) {
    planned.push({ builds: ['localKms'], label: 'local-kms', ports: [{ port: config.kms.local.port, variable: 'KMS_PORT', what: 'local-kms' }] });
  }
  if (config.stripe.mock) {
    planned.push({ builds: ['stripeMock'], label: 'stripe-mock', ports: [{ port: config.stripe.mock.port, variable: 'STRIPE_MOCK_PORT', what: 'stripe-mock' }] });
  }
  return planned;
}

/** Fails before anything starts if a port we need is taken, naming the variable that moves it. */
export async function assertPortsFree(ports: readonly { port: number; variable: string; what: string }[]): Promise<void> {
  const taken: string[] = [];
  for (const p of ports) {
    if (!(await portIsFree(p.port))) taken.push(`port ${p.port} (${p.what}) is in use; free it or set ${p.variable}`);
  }
  if (taken.length > 0) throw new PortInUseError(taken.join('\n'));
}

export interface LocalServers {
  readonly processes: readonly ManagedProcess[];
  stop(): Promise<void>;
}

/**
 * Starts the local servers `config` asks for, concurrently, every one bound to 127.0.0.1,
 * and resolves once each answers. If one fails, the others are stopped before rejecting.
 */
export async function startLocalServers(config: Config, logDir: string): Promise<LocalServers> {
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop()));
  };
  const starting: Promise<void>[] = [];

  const dev = config.temporal.devServer;
  if (dev) {
    const temporal = spawnServer({
      name: 'temporal',
      command: serverPath('temporal', config.toolsDir, envWith('TEMPORAL_CLI_PATH', dev.executable)),
      args: temporalDevServerArgs(config),
      logDir,
    });
    processes.push(temporal);
    starting.push(waitUntilReady(temporal, () => temporalAnswers(config.temporal.address, config.temporal.namespace), 60_000));
  }

  const full = config.temporal.fullServer;
  if (full) {
    const { server, sqlTool, cli } = full.executables;
    starting.push(
      startTemporalServer({
        databaseUrl: ownerDatabaseUrl(config),
        suffix: temporalDatabaseSuffix(config),
        namespace: config.temporal.namespace,
        toolsDir: config.toolsDir,
        dir: path.join(config.dataDir, 'temporal-server'),
        logDir,
        ports: { frontend: full.port, http: full.httpPort, metrics: full.metricsPort },
        env: { ...process.env, ...envWith('TEMPORAL_SERVER_PATH', server), ...envWith('TEMPORAL_SQL_TOOL_PATH', sqlTool), ...envWith('TEMPORAL_CLI_PATH', cli) },
      }).then((temporal) => void processes.push(temporal.process)),
    );
  }

  if (config.kms.local) {
    const { port, executable } = config.kms.local;
    const kms = spawnServer({
      name: 'local-kms',
      command: serverPath('localKms', config.toolsDir, envWith('LOCAL_KMS_PATH', executable)),
      env: localKmsEnv(config, port),
      logDir,
    });
    processes.push(kms);
    starting.push(waitUntilReady(kms, () => tcpProbe(port)));
  }

  if (config.stripe.mock) {
    const { port } = config.stripe.mock;
    const mock = spawnServer({
      name: 'stripe-mock',
      command: serverPath('stripeMock', config.toolsDir, envWith('STRIPE_MOCK_PATH', config.stripe.mock.executable)),
      // HTTPS cannot be switched off; keep it on a loopback port the OS picks.
      args: ['-http-addr', `127.0.0.1:${port}`, '-https-addr', '127.0.0.1:0'],
      logDir,
    });
    processes.push(mock);
    starting.push(waitUntilReady(mock, () => tcpProbe(port)));
  }

  try {
    await Promise.all(starting);
  } catch (err) {
    await stop();
    throw err;
  }
  return { processes, stop };
}

/**
 * Write-ahead logging and normal syncs for the dev server's SQLite file: about twice the
 * workflow starts per second of SQLite's defaults (rollback journal, a sync per commit) here.
 * A crash may lose the last moments of a development server; never used in production.
 */
export const DEV_SERVER_SQLITE_PRAGMAS = ['--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal'];

export function temporalDevServerArgs(config: Config): string[] {
  const dev = config.temporal.devServer!;
  return [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(dev.port),
    '--ui-ip',
    '127.0.0.1',
    '--ui-port',
    String(dev.uiBackendPort),
    '--http-port',
    String(dev.httpPort),
    '--metrics-port',
    String(dev.metricsPort),
    '--db-filename',
    path.join(config.dataDir, 'temporal.sqlite'),
    ...DEV_SERVER_SQLITE_PRAGMAS,
    '--namespace',
    config.temporal.namespace,
    '--log-level',
    'warn',
    // Operators open the UI through the proxy (ui-proxy.ts), which serves the codec server under
    // this path: the UI's /decode calls are same-origin and carry the codec session cookie.
    '--ui-codec-endpoint',
    CODEC_PATH_PREFIX,
    ...devServerSearchAttributeArgs(),
  ];
}

/**
 * local-kms keeps its keys under the data folder, so they outlive a restart like AWS KMS
 * keys do. It gets no seed file: the master keys, the codec key and the HMAC keys are
 * created through the KMS API on first start (ensureMasterKeys), as in production.
 * local-kms has no bind option and listens on every interface (README, "local-kms").
 */
function localKmsEnv(config: Config, port: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PORT: String(port),
    KMS_REGION: config.kms.region,
    KMS_ACCOUNT_ID: LOCAL_KMS_ACCOUNT_ID,
    KMS_DATA_PATH: path.join(config.dataDir, 'local-kms'),
    KMS_SEED_PATH: path.join(config.dataDir, 'local-kms-no-seed.yaml'),
  };
}

/** The account id local-kms puts in its ARNs; nothing checks it. */
const LOCAL_KMS_ACCOUNT_ID = '111122223333';

/** `npm start`'s Temporal databases are named after Ledgerlock's: `temporal_<db>`, `temporal_visibility_<db>`. */
export function temporalDatabaseSuffix(config: Pick<Config, 'databaseUrl'>): string {
  return decodeURIComponent(new URL(ownerDatabaseUrl(config)).pathname.replace(/^\//, '')) || 'ledgerlock';
}

function envWith(variable: string, value: string | undefined): NodeJS.ProcessEnv {
  return value ? { ...process.env, [variable]: value } : process.env;
}

async function temporalAnswers(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    await connection.workflowService.describeNamespace({ namespace });
  } finally {
    await connection.close();
  }
}
