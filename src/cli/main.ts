import os from 'node:os';
import { parseArgs } from 'node:util';
import { isScope, SCOPES, type Scope } from '../auth/scopes';
import { ensureLocalSigningKey } from '../auth/signing-keys';
import { assertLocalMintingAllowed, MAX_LOCAL_TOKEN_TTL_SECONDS, mintToken, TokenMintingRefusedError } from '../auth/tokens';
import { checkpointSinkFor, databaseName } from '../audit/audit-checkpoints';
import { verifyAuditTrail } from '../audit/audit-verify';
import { auditCheckpointKeyAlias, ConfigError, loadConfig, ownerDatabaseUrl, type Config } from '../config/config';
import { createDb, ensureDatabase } from '../db/database';
import { createKmsClient } from '../kms/kms-client';
import { LeastPrivilegeError } from '../db/least-privilege';
import { migrate, type MigrateDirection } from '../db/migrate';
import { createLogger, errorMessage, type Logger } from '../log';
import { startApi, startApp, startCodecServer, startWorker, type Running } from '../runtime';
import { onParentGone, type AppReadyMessage } from '../stack/app-supervisor';
import { createServices, type Services } from '../services';
import { AlreadyRunningError } from '../stack/lock';
import { PortInUseError } from '../stack/local-servers';
import { StartupError } from '../stack/process';
import { ensureServers, SetupError } from '../stack/servers';
import { SUBSCRIPTION_ID_PATTERN } from '../../workflows/subscription-contracts';
import { GRACE_PERIOD_STAGE } from '../../workflows/key-rotation-contracts';
import { formatEndpoints, startStack } from '../stack/start';
import { createStripe } from '../stripe/stripe-client';
import { stripeIdPattern } from '../stripe/stripe-ids';
import { isTriggerEventType, TRIGGER_EVENT_TYPES, triggerStripeEvent, TriggerError } from '../webhooks/trigger';
import { RotationAlreadyRunningError, rotationStatus, startKeyRotation } from '../keys/key-rotation-service';
import { progressLine } from '../keys/progress-bar';
import { retentionPlan } from '../customers/customer-retention';
import { connectClient } from '../temporal/connection';
import { installTemporalRuntime, temporalPrometheusExporter } from '../temporal/runtime-telemetry';
import { databaseGauges } from '../metrics/db-gauges';
import { startMetricsServer, type MetricsServer } from '../metrics/metrics-server';
import { installTracing } from '../tracing/tracing';

const USAGE = `Usage: ledgerlock <command>

Commands:
  start                    start the whole orchestrator locally (what \`npm start\` runs)
  app [--workflow-bundle F] run the API, the workers and the codec server in one process
                           (what \`npm start\` supervises and restarts)
  setup                    build the pinned local servers into the tools folder
  migrate [latest|up|down] apply database migrations (default: latest)
  audit verify             check the audit trail's hash chain and its signed checkpoints;
                           exits 1 naming each tampering found
  worker                   run a worker against the configured Temporal
  api                      run the HTTP API against the configured Temporal
  codec-server             run the codec server the Temporal Web UI decodes payloads through
  token --sub <identity> --scopes <a,b,...> [--ttl <seconds>]
                           print an API token signed with the data folder's key
                           (local use only; ttl default 3600)
  keys rotate [--wait-retirement] [--emergency]
                           rotate every master key now and show its progress until the
                           new keys are promoted (or, with --wait-retirement, until the
                           old ones are retired after the grace period); --emergency for
                           a key suspected compromised: runs even while an earlier
                           rotation waits out its grace, and retires the replaced keys
                           after DATA_KEY_CACHE_MAX_AGE_SECONDS
  retention plan           list the customers the next \`customer-retention\` run would erase
                           (CUSTOMER_RETENTION_DAYS after their last subscription ended);
                           opaque ids only, nothing is erased
  stripe trigger <event-type> --subscription <sub_ll_…> [--invoice <in_…>]
                 [--payment-method <pm_…>] [--api <url>]
                           post a signed Stripe event about a subscription to the local
                           API (local use only); event types: ${TRIGGER_EVENT_TYPES.join(', ')}
`;

/** The commands `main` understands; docker-compose.yml's services run these. */
export const COMMANDS = ['codec-server', 'start', 'app', 'setup', 'migrate', 'worker', 'api', 'token', 'audit', 'stripe', 'keys', 'retention', 'help'] as const;

class UsageError extends Error {
  override name = 'UsageError';
}

/** Errors whose message is written for the operator: printed without a stack trace. */
const OPERATOR_ERRORS = [UsageError, ConfigError, LeastPrivilegeError, AlreadyRunningError, PortInUseError, SetupError, StartupError, TokenMintingRefusedError, TriggerError, RotationAlreadyRunningError];

export function run(argv: string[]): void {
  const [command, ...rest] = argv;
  main(command, rest).catch((err) => {
    const forOperator = OPERATOR_ERRORS.some((type) => err instanceof type);
    process.stderr.write(`ledgerlock ${command ?? ''}: ${forOperator ? errorMessage(err) : (err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
}

async function main(command: string | undefined, args: string[]): Promise<void> {
  switch (command) {
    case 'start':
      return start();
    case 'app':
      return appCommand(args);
    case 'setup': {
      const config = loadConfig();
      await ensureServers(config.toolsDir);
      process.stdout.write('local servers ready\n');
      return;
    }
    case 'migrate':
      return migrateCommand(args[0] ?? 'latest');
    case 'audit':
      return auditCommand(args);
    case 'worker':
      return runUntilSignalled((config, log, services) => startWorker(config, log, services), { runsWorkers: true });
    case 'api':
      return runUntilSignalled((config, log, services) => startApi(config, log, services), { databaseGauges: true });
    case 'codec-server':
      return runUntilSignalled((config, log, services) => startCodecServer(config, log, services));
    case 'token':
      return tokenCommand(args);
    case 'stripe':
      return stripeCommand(args);
    case 'keys':
      return keysCommand(args);
    case 'retention':
      return retentionCommand(args);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command: ${command}\n\n${USAGE}`);
  }
}

function setUp(): { config: Config; log: Logger } {
  const config = loadConfig();
  return { config, log: createLogger(config.logLevel, { service: 'ledgerlock' }) };
}

async function start(): Promise<void> {
  const { config, log } = setUp();
  guardAgainstCrashes(log);
  const stack = await startStack(config, log);
  process.stdout.write(`\n${formatEndpoints(stack.endpoints)}\n\n`);
  await stopOnSignal(stack.stop, log, { whenParentGone: true });
}

/** `app`: the process `npm start` supervises; tells it when it serves, and ends when it is gone. */
async function appCommand(args: string[]): Promise<void> {
  let values: { 'workflow-bundle'?: string };
  try {
    ({ values } = parseArgs({ args, options: { 'workflow-bundle': { type: 'string' } } }));
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
  }
  const bundlePath = values['workflow-bundle'];
  await runUntilSignalled(
    async (config, log, services, metricsUrl) => {
      const app = await startApp(config, log, services, bundlePath ? { codePath: bundlePath } : undefined);
      const ready: AppReadyMessage = { type: 'ready', apiUrl: app.apiUrl, codecUrl: app.codecUrl, metricsUrl };
      process.send?.(ready);
      return app;
    },
    { runsWorkers: true, databaseGauges: true },
  );
}

/**
 * A long-running process is not ended by a promise nobody awaited: the rejection is logged
 * and the process goes on (the work it belonged to retries or reports on its own path).
 */
function guardAgainstCrashes(log: Logger): void {
  process.on('unhandledRejection', (reason) => log.error({ reason: errorMessage(reason) }, 'unhandled rejection'));
}

/**
 * Runs a long-lived process: its metrics listener first (METRICS_HOST/METRICS_PORT; with the
 * Temporal SDK's runtime metrics merged in where it runs workers, and the PostgreSQL-backed
 * gauges where it runs the API), then what `begin` starts, until a signal stops both.
 */
async function runUntilSignalled(
  begin: (config: Config, log: Logger, services: Services, metricsUrl: string) => Promise<Running>,
  options: { runsWorkers?: boolean; databaseGauges?: boolean } = {},
): Promise<void> {
  const { config, log } = setUp();
  guardAgainstCrashes(log);
  // Before any worker connection: the SDK's logs, workflows' and activities' included, go through `log`,
  // and its metrics to a loopback exporter our /metrics merges in.
  // Clients alone (API, codec server) need no Runtime: they speak gRPC from JavaScript.
  let temporalMetricsUrl: string | undefined;
  if (options.runsWorkers) {
    const prometheus = await temporalPrometheusExporter();
    installTemporalRuntime(log, config.logLevel, prometheus.telemetry);
    temporalMetricsUrl = prometheus.url;
  }
  // Before the clients: their HTTP calls (Stripe, KMS) are traced from the first.
  const traces = installTracing(config);
  const services = createServices(config, log);
  let metrics: MetricsServer | undefined;
  const running = await (async () => {
    metrics = await startMetricsServer({
      ...config.metrics,
      log,
      ...(temporalMetricsUrl ? { temporalMetricsUrl } : {}),
      ...(options.databaseGauges ? { beforeScrape: databaseGauges(services.db) } : {}),
    });
    return begin(config, log, services, metrics.url);
  })().catch(async (err: unknown) => {
    await metrics?.stop();
    await services.close();
    await traces.shutdown();
    throw err;
  });
  await stopOnSignal(async () => {
    await running.stop();
    await metrics!.stop();
    await services.close();
    // Last: what the shutdown itself traced is exported too.
    await traces.shutdown();
  }, log);
}

/**
 * Waits for SIGINT or SIGTERM, stops gracefully, exits. A second signal forces the exit.
 * Started by a supervisor over IPC (`npm start`'s app process), it also stops when that
 * channel closes; with `whenParentGone`, when the process that started it is gone.
 */
function stopOnSignal(stop: () => Promise<void>, log: Logger, options: { whenParentGone?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals | 'supervisor gone' | 'parent gone') => {
      if (stopping) {
        log.warn({ signal }, 'forced exit');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'stopping');
      stop()
        .then(() => {
          log.info('stopped');
          resolve();
          process.exit(0);
        })
        .catch((err) => {
          log.error({ reason: errorMessage(err) }, 'stop failed');
          process.exit(1);
        });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (process.send) process.on('disconnect', () => onSignal('supervisor gone'));
    if (options.whenParentGone) onParentGone(() => onSignal('parent gone'));
  });
}

/** `retention plan`: the dry run of the `customer-retention` schedule, from the same query its workflow pages through. */
async function retentionCommand(args: string[]): Promise<void> {
  if (args.length !== 1 || args[0] !== 'plan') throw new UsageError(`expected retention plan\n\n${USAGE}`);
  const { config } = setUp();
  const db = createDb(config.databaseAppUrl, { max: 1 });
  try {
    const { cutoff, candidates } = await retentionPlan(db, new Date(), config.customerRetentionDays);
    const lines = [
      `retention plan: CUSTOMER_RETENTION_DAYS=${config.customerRetentionDays}, business ended before ${cutoff.toISOString()}`,
      ...candidates.map((c) => `${c.customerId}\t${c.region}\tlast activity ${c.lastActivityAt.toISOString()}`),
      `${candidates.length} customer${candidates.length === 1 ? '' : 's'} would be erased`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await db.destroy();
  }
}

async function migrateCommand(direction: string): Promise<void> {
  if (direction !== 'latest' && direction !== 'up' && direction !== 'down') {
    throw new UsageError(`expected latest, up or down, got ${direction}`);
  }
  const { config } = setUp();
  const ownerUrl = ownerDatabaseUrl(config);
  await ensureDatabase(ownerUrl);
  const db = createDb(ownerUrl, { max: 1 });
  try {
    const names = await migrate(db, direction as MigrateDirection);
    process.stdout.write(names.length ? `${direction === 'down' ? 'reverted' : 'applied'}: ${names.join(', ')}\n` : 'nothing to do\n');
  } finally {
    await db.destroy();
  }
}

/**
 * `audit verify`: the chain and every signed checkpoint. Prints one line per tampering
 * found and exits 1, or one line saying what is intact and how far checkpoints pin it.
 */
async function auditCommand(args: string[]): Promise<void> {
  if (args.length !== 1 || args[0] !== 'verify') throw new UsageError(`expected audit verify\n\n${USAGE}`);
  const { config } = setUp();
  // Verifying only reads: the application role suffices, and no owner's password is needed.
  const db = createDb(config.databaseAppUrl, { max: 1 });
  const kms = createKmsClient(config);
  try {
    const verdict = await verifyAuditTrail({
      db,
      kms,
      sink: checkpointSinkFor(config),
      keyId: auditCheckpointKeyAlias(config),
      database: databaseName(config.databaseAppUrl),
    });
    if (!verdict.ok) {
      for (const problem of verdict.problems) process.stdout.write(`audit trail broken at ${problem.at}: ${problem.reason}\n`);
      process.exitCode = 1;
      return;
    }
    const newest = verdict.newestCheckpoint;
    const pinned = newest
      ? `, ${verdict.checkpoints} signed checkpoint${verdict.checkpoints === 1 ? '' : 's'}, the newest for entry #${newest.seq} at ${newest.createdAt}${verdict.unpinned > 0 ? `; ${verdict.unpinned} newer entries not yet checkpointed` : ''}`
      : verdict.entries > 0
        ? '; no signed checkpoint yet, so a cut tail or a rehashed chain would not show'
        : '';
    process.stdout.write(`audit trail intact: ${verdict.entries} entries${pinned}\n`);
  } finally {
    kms.destroy();
    await db.destroy();
  }
}

const DEFAULT_TOKEN_TTL_SECONDS = 3600;

/** Prints only the token, so that `TOKEN=$(ledgerlock token …)` works. */
async function tokenCommand(args: string[]): Promise<void> {
  let values: { sub?: string; scopes?: string; ttl?: string };
  try {
    ({ values } = parseArgs({ args, options: { sub: { type: 'string' }, scopes: { type: 'string' }, ttl: { type: 'string' } } }));
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
  }
  if (!values.sub?.trim()) throw new UsageError('--sub <identity> is required');
  const scopes = parseScopes(values.scopes);
  const ttlSeconds = values.ttl === undefined ? DEFAULT_TOKEN_TTL_SECONDS : Number(values.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_LOCAL_TOKEN_TTL_SECONDS) {
    throw new UsageError(`--ttl must be a whole number of seconds from 1 to ${MAX_LOCAL_TOKEN_TTL_SECONDS}`);
  }
  const config = loadConfig();
  // Before the key: production must not end up with a signing key in its data folder.
  assertLocalMintingAllowed(config);
  const key = await ensureLocalSigningKey(config.dataDir);
  process.stdout.write(`${await mintToken(config, key, { subject: values.sub, scopes, ttlSeconds })}\n`);
}

function parseScopes(list: string | undefined): Scope[] {
  const names = (list ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '');
  if (names.length === 0) throw new UsageError(`--scopes <a,b,...> is required; valid scopes: ${SCOPES.join(', ')}`);
  const unknown = names.filter((name) => !isScope(name));
  if (unknown.length > 0) throw new UsageError(`unknown scope: ${unknown.join(', ')}; valid scopes: ${SCOPES.join(', ')}`);
  return names as Scope[];
}

/** `stripe trigger <type> --subscription <id>`: prints the event (and invoice) id; exits 1 unless the API accepted it. */
async function stripeCommand(args: string[]): Promise<void> {
  let parsed: { values: { subscription?: string; invoice?: string; 'payment-method'?: string; api?: string }; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { subscription: { type: 'string' }, invoice: { type: 'string' }, 'payment-method': { type: 'string' }, api: { type: 'string' } },
    });
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
  }
  const [sub, type, ...extra] = parsed.positionals;
  const { values } = parsed;
  if (sub !== 'trigger' || extra.length > 0) throw new UsageError(`expected stripe trigger <event-type> --subscription <id>\n\n${USAGE}`);
  if (!type || !isTriggerEventType(type)) throw new UsageError(`event type must be one of ${TRIGGER_EVENT_TYPES.join(', ')}`);
  if (!values.subscription || !SUBSCRIPTION_ID_PATTERN.test(values.subscription)) throw new UsageError('--subscription <sub_ll_…> is required');
  if (values.invoice !== undefined && !stripeIdPattern('in').test(values.invoice)) throw new UsageError('--invoice must be a Stripe invoice id (in_…)');
  if (values['payment-method'] !== undefined && !/^pm_[A-Za-z0-9_]+$/.test(values['payment-method'])) throw new UsageError('--payment-method must be a Stripe payment method id (pm_…)');
  if (values.api !== undefined && !/^https?:\/\/[^\s]+$/.test(values.api)) throw new UsageError('--api must be an http(s) URL');

  const config = loadConfig();
  const db = createDb(config.databaseAppUrl, { max: 1 });
  try {
    const result = await triggerStripeEvent(config, db, createStripe(config), {
      type,
      subscriptionId: values.subscription,
      ...(values.invoice ? { invoiceId: values.invoice } : {}),
      ...(values['payment-method'] ? { paymentMethodId: values['payment-method'] } : {}),
      ...(values.api ? { apiUrl: values.api } : {}),
    });
    process.stdout.write(`${result.type} ${result.eventId}${result.invoiceId ? ` invoice ${result.invoiceId}` : ''}: HTTP ${result.status} ${result.response}\n`);
    if (result.status < 200 || result.status > 299) process.exitCode = 1;
  } finally {
    await db.destroy();
  }
}

/**
 * `keys rotate`: starts a rotation and draws its progress (a bar on a terminal, a line per
 * change otherwise) until the new keys are promoted, or with --wait-retirement until it
 * ends. Exits 1 when the rotation fails (it has then undone itself).
 */
async function keysCommand(args: string[]): Promise<void> {
  let values: { 'wait-retirement'?: boolean; emergency?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args, allowPositionals: true, options: { 'wait-retirement': { type: 'boolean' }, emergency: { type: 'boolean' } } }));
  } catch (err) {
    throw new UsageError(`${errorMessage(err)}\n\n${USAGE}`);
  }
  if (positionals.length !== 1 || positionals[0] !== 'rotate') throw new UsageError(`expected keys rotate\n\n${USAGE}`);
  const { config, log } = setUp();
  const services = createServices(config, log);
  const client = await connectClient(config, services.dataConverter);
  try {
    const rotationId = await startKeyRotation(client, services.db, config, `operator:${os.userInfo().username}`, values.emergency ? 'suspected compromise' : undefined);
    process.stdout.write(`key rotation ${rotationId} started\n`);
    const tty = process.stderr.isTTY;
    let last = '';
    for (;;) {
      const status = await rotationStatus(client, services.db, rotationId);
      if (status) {
        const line = progressLine(status);
        if (line !== last) process.stderr.write(tty ? `\r${line.padEnd(last.length)}` : `${line}\n`);
        last = line;
        const promoted = status.stage === GRACE_PERIOD_STAGE && !values['wait-retirement'];
        if (status.status !== 'running' || promoted) {
          if (tty) process.stderr.write('\n');
          if (status.status === 'failed') {
            process.stdout.write(`key rotation ${rotationId} failed and was undone: ${status.failure ?? 'unknown reason'}\n`);
            process.exitCode = 1;
          } else if (promoted) {
            const retireAt = status.progress?.retireAt;
            process.stdout.write(`new master keys promoted; the old ones retire${retireAt ? ` at ${new Date(retireAt).toISOString()}` : ' after the grace period'}\n`);
          } else {
            process.stdout.write(`key rotation ${rotationId} completed\n`);
          }
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    await client.connection.close();
    await services.close();
  }
}
