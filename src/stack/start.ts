import { rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SESSION_COOKIE } from '../codec/codec-server';
import { ownerDatabaseUrl, type Config } from '../config/config';
import { createDb, ensureDatabase } from '../db/database';
import { migrate } from '../db/migrate';
import { createKmsClient, ensureMasterKeys } from '../kms/kms-client';
import type { Logger } from '../log';
import { STRIPE_WEBHOOK_PATH } from '../webhooks/webhook-routes';
import { localWebhookSecretPath } from '../webhooks/webhook-secrets';
import { bundleWorkflows } from '../worker/worker';
import { superviseApp, type SupervisedApp } from './app-supervisor';
import { acquireLock } from './lock';
import { LEDGERLOCK_BIN } from './paths';
import { assertPortsFree, plannedServers, startLocalServers, temporalDatabaseSuffix, type LocalServers } from './local-servers';
import { temporalDatabaseNames } from './temporal-server';
import { ensureServers } from './servers';
import { CODEC_PATH_PREFIX, startUiProxy, type RunningUiProxy } from './ui-proxy';

export interface Stack {
  /** What runs where, as printed in the ready table. */
  readonly endpoints: readonly { readonly name: string; readonly where: string }[];
  stop(): Promise<void>;
}

/**
 * Starts the whole orchestrator: the local servers the config asks for, migrations, then
 * the app process (API, workers, codec server: `ledgerlock app`), which it supervises and
 * restarts whenever it dies. Slow, independent steps run concurrently (the servers boot
 * while webpack bundles the workflows, once, into the data folder, and PostgreSQL
 * migrates). On any failure everything already started is stopped again before the error
 * propagates; and however this process ends short of SIGKILL, no child outlives it.
 */
export async function startStack(config: Config, log: Logger): Promise<Stack> {
  const releaseLock = acquireLock(config.dataDir);
  let servers: LocalServers | undefined;
  let app: SupervisedApp | undefined;
  let uiProxy: RunningUiProxy | undefined;
  const runFile = path.join(config.dataDir, 'run.json');
  // The last resort, for an exit no stop() ran before (an uncaught error): nothing stays behind.
  const killChildren = () => {
    for (const pid of [app?.pid(), ...(servers?.processes ?? []).map((p) => p.pid)]) {
      if (pid !== undefined && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  };
  process.on('exit', killChildren);

  const stop = async () => {
    await uiProxy?.stop();
    await app?.stop().catch((err) => log.error({ reason: String(err) }, 'stop failed'));
    await servers?.stop();
    process.off('exit', killChildren);
    rmSync(runFile, { force: true });
    releaseLock();
  };

  try {
    const planned = plannedServers(config);
    await ensureServers(config.toolsDir, { only: planned.flatMap((s) => s.builds) });
    await assertPortsFree([
      ...planned.flatMap((s) => s.ports),
      { port: config.api.port, variable: 'API_PORT', what: 'Ledgerlock API' },
      { port: config.codec.port, variable: 'CODEC_PORT', what: 'codec server' },
      { port: config.metrics.port, variable: 'METRICS_PORT', what: 'Ledgerlock metrics' },
      ...(config.temporal.devServer ? [{ port: config.temporal.devServer.uiPort, variable: 'TEMPORAL_UI_PORT', what: 'Temporal Web UI' }] : []),
    ]);

    // Bundled once here: a restarted app process loads the file instead of running webpack again.
    const bundlePath = path.join(config.dataDir, 'run', 'workflow-bundle.js');
    const bundling = bundleWorkflows(config).then(async ({ code }) => {
      await mkdir(path.dirname(bundlePath), { recursive: true });
      await writeFile(bundlePath, code);
    });
    // The owner's connection, for migrations only; everything else connects as the application role.
    const ownerUrl = ownerDatabaseUrl(config);
    const migrating = ensureDatabase(ownerUrl).then(async () => {
      const db = createDb(ownerUrl, { max: 1 });
      try {
        return await migrate(db);
      } finally {
        await db.destroy();
      }
    });
    const booting = startLocalServers(config, path.join(config.dataDir, 'logs'));
    // Settle all three before reacting, so a failure in one never leaves another running unnoticed.
    const [bootResult, migrateResult, bundleResult] = await Promise.allSettled([booting, migrating, bundling]);
    if (bootResult.status === 'fulfilled') servers = bootResult.value;
    for (const result of [bootResult, migrateResult, bundleResult]) if (result.status === 'rejected') throw result.reason;
    const applied = (migrateResult as PromiseFulfilledResult<string[]>).value;
    if (applied.length > 0) log.info({ count: applied.length }, 'migrations applied');

    const kms = createKmsClient(config);
    try {
      const created = await ensureMasterKeys(kms, config);
      if (created.length > 0) log.info({ aliases: created.join(',') }, 'master keys created');
    } finally {
      kms.destroy();
    }

    if (config.temporal.devServer) uiProxy = await startOperatorUi(config, log);
    app = superviseApp({ command: process.execPath, args: [LEDGERLOCK_BIN, 'app', '--workflow-bundle', bundlePath], log });
    const { apiUrl, codecUrl, metricsUrl } = await app.ready;

    const endpoints = describeEndpoints(config, apiUrl, codecUrl, metricsUrl, uiProxy?.url);
    writeFileSync(
      runFile,
      JSON.stringify({ pid: process.pid, appPid: app.pid() ?? null, servers: (servers?.processes ?? []).map((p) => ({ name: p.name, pid: p.pid })), endpoints }, null, 2),
    );
    return { endpoints, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The Web UI operators open: the dev server's UI and the codec server on one origin
 * (ui-proxy.ts), so signing in at its /codec/login is all it takes for payloads to decode.
 */
async function startOperatorUi(config: Config, log: Logger): Promise<RunningUiProxy> {
  const dev = config.temporal.devServer!;
  const tls = config.apiTls ? { cert: await readFile(config.apiTls.certPath, 'utf8'), key: await readFile(config.apiTls.keyPath, 'utf8') } : undefined;
  return startUiProxy({
    host: dev.uiHost,
    port: dev.uiPort,
    ui: { host: '127.0.0.1', port: dev.uiBackendPort },
    // The codec server serves HTTPS with the API's certificate when one is configured.
    codec: { host: loopbackOf(config.codec.host), port: config.codec.port, ...(tls ? { tlsCert: tls.cert } : {}) },
    sessionCookie: SESSION_COOKIE,
    ...(tls ? { tls } : {}),
    log,
  });
}

/** Where to reach a server bound to `host` from this machine. */
function loopbackOf(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}

function describeEndpoints(config: Config, apiUrl: string, codecUrl: string, metricsUrl: string, uiUrl: string | undefined): { name: string; where: string }[] {
  const db = new URL(config.databaseAppUrl);
  const endpoints = [
    { name: 'API', where: apiUrl },
    {
      name: 'Stripe webhooks',
      where: `${apiUrl}${STRIPE_WEBHOOK_PATH}${config.stripe.webhookSecrets ? '' : ` (secret in ${path.relative(process.cwd(), localWebhookSecretPath(config.dataDir)) || localWebhookSecretPath(config.dataDir)}; try \`npx ledgerlock stripe trigger\`)`}`,
    },
    { name: 'Codec server', where: uiUrl ? `${codecUrl} (for bearer tokens; the Web UI reaches it as ${uiUrl}${CODEC_PATH_PREFIX})` : `${codecUrl} (operators sign in at ${codecUrl}/login)` },
    { name: 'Metrics', where: `${metricsUrl} (Prometheus text: ledgerlock_ and the Temporal SDK's temporal_ metrics)` },
  ];
  const full = config.temporal.fullServer
    ? `; full server on PostgreSQL, databases ${Object.values(temporalDatabaseNames(temporalDatabaseSuffix(config))).join(' and ')}, no Web UI`
    : '';
  endpoints.push({ name: 'Temporal', where: `${config.temporal.address} (namespace ${config.temporal.namespace}${full})` });
  if (uiUrl) {
    endpoints.push({ name: 'Temporal Web UI', where: uiUrl });
    endpoints.push({ name: 'Operator sign-in', where: `${uiUrl}${CODEC_PATH_PREFIX}/login (a payload:decrypt token; then payloads decode in the Web UI)` });
  }
  // Host and database only: DATABASE_URL may carry a password.
  endpoints.push({ name: 'PostgreSQL', where: `${db.host}${db.pathname} (as ${decodeURIComponent(db.username)})` });
  endpoints.push({ name: 'KMS', where: config.kms.endpoint ?? `AWS KMS (${config.kms.region})` });
  endpoints.push({ name: 'Stripe', where: config.stripe.apiUrl ?? 'Stripe API (api.stripe.com)' });
  return endpoints;
}

/** The short table printed once everything is ready. */
export function formatEndpoints(endpoints: Stack['endpoints']): string {
  const width = Math.max(...endpoints.map((e) => e.name.length));
  return ['Ledgerlock is ready', ...endpoints.map((e) => `  ${e.name.padEnd(width)}  ${e.where}`), 'Press Ctrl-C to stop.'].join('\n');
}
