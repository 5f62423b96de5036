import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { NativeConnection, Worker, WorkflowBundleOption } from '@temporalio/worker';
import { appendAuditEntry } from './audit/audit-dal';
import { startConfiguredCheckpointer } from './audit/audit-checkpoints';
import { assertLeastPrivilege } from './db/least-privilege';
import { createAuditRouter } from './audit/audit-routes';
import { ensureKeyRotationSchedule } from './keys/key-rotation-service';
import { ensureRetentionSchedule } from './customers/customer-retention';
import { createKeyRotationRouter } from './keys/key-rotation-routes';
import { ensureLocalSigningKey } from './auth/signing-keys';
import { createTokenVerifier } from './auth/tokens';
import { createCodecApp } from './codec/codec-server';
import type { Config } from './config/config';
import { createCustomerRouter } from './customers/customer-routes';
import { createSubscriptionRouter } from './subscriptions/subscription-routes';
import { healthChecks } from './health/health';
import { createApp } from './http/app';
import { authorize } from './http/auth';
import { createRateLimiter, rateLimited } from './http/rate-limit';
import { errorMessage, type Logger } from './log';
import type { Services } from './services';
import { connectClient, connectWorker, lazyServingClient } from './temporal/connection';
import { startWebhookRelay } from './webhooks/relay';
import { createStripeWebhookRouter } from './webhooks/webhook-routes';
import { webhookSecrets } from './webhooks/webhook-secrets';
import { createWorkers } from './worker/worker';

/** Something started that `stop` stops. The services passed in stay open: their creator closes them. */
export interface Running {
  stop(): Promise<void>;
}

export interface RunningServer extends Running {
  readonly url: string;
}

/** Waits between attempts to bring a failed worker back: doubling from 1 s, at most 30 s. */
const WORKER_RESTART_MS = { first: 1_000, max: 30_000 } as const;

/**
 * Starts the workers (general and Stripe task queues) and the audit checkpointer, and
 * resolves once they poll. A worker that fails later (its connection to Temporal lost for
 * longer than the SDK retries, say) is not the end of the process: the pair is rebuilt on a
 * fresh connection, with backoff, until it polls again. `stop` drains in-flight tasks
 * first, then checkpoints.
 */
export async function startWorker(
  config: Config,
  log: Logger,
  services: Services,
  workflowBundle?: WorkflowBundleOption,
): Promise<Running> {
  await assertLeastPrivilege(services.db, log);
  // The rotation and retention schedules exist wherever workers run; creating them again only updates them.
  const client = await connectClient(config, services.dataConverter);
  try {
    await ensureKeyRotationSchedule(client, config, log);
    await ensureRetentionSchedule(client, config, log);
  } finally {
    await client.connection.close();
  }
  let stopping = false;
  let current: { workers: Worker[]; runs: Promise<unknown>; connection: NativeConnection } | undefined;
  let wake: (() => void) | undefined;

  const launch = async () => {
    const connection = await connectWorker(config);
    try {
      const workers = await createWorkers({
        config,
        connection,
        dataConverter: services.workerDataConverter,
        deps: { identity: `${process.pid}@${os.hostname()}`, ...services, config, log },
        ...(workflowBundle ? { workflowBundle } : {}),
      });
      const runs = Promise.all(workers.map((worker) => worker.run()));
      current = { workers, runs, connection };
      log.info({ taskQueues: workers.map((w) => w.options.taskQueue).join(',') }, 'worker polling');
      // Wrapped: an async function returning the promise itself would wait for the workers to end.
      return { runs };
    } catch (err) {
      await connection.close().catch(() => undefined);
      throw err;
    }
  };

  /** Drains and closes the current pair, if any. */
  const retire = async () => {
    const pair = current;
    current = undefined;
    for (const worker of pair?.workers ?? []) if (worker.getState() === 'RUNNING') worker.shutdown();
    await pair?.runs.catch(() => undefined);
    await pair?.connection.close().catch(() => undefined);
  };

  const supervise = async (firstRun: Promise<unknown>) => {
    let run = firstRun;
    for (let failures = 0; ; ) {
      try {
        // A run that ends without an error was shut down on purpose: by stop(), or by the SDK on a signal.
        await run;
        return;
      } catch (err) {
        if (stopping) return;
        // One worker of the pair failing leaves the other polling alone: stop both, then rebuild both.
        await retire();
        const waitMs = Math.min(WORKER_RESTART_MS.first * 2 ** failures++, WORKER_RESTART_MS.max);
        log.error({ reason: errorMessage(err), inMs: waitMs, restarts: failures }, 'worker failed; restarting');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        if (stopping) return;
        run = launch().then(({ runs }) => {
          failures = 0;
          return runs;
        });
      }
    }
  };

  const supervision = supervise((await launch()).runs);
  // Workers outlive API processes and run wherever Ledgerlock runs: they sign the audit chain's head.
  const checkpointer = startConfiguredCheckpointer(config, { db: services.db, kms: services.kms, log });
  return {
    async stop() {
      stopping = true;
      wake?.();
      await retire();
      await supervision;
      // After the last activity: its audit entries get their checkpoint.
      await checkpointer.stop();
    },
  };
}

/**
 * Starts the HTTP API and the webhook relay that delivers recorded Stripe events to their
 * workflows; resolves once it listens. HTTPS with TLS 1.3 at least when given a certificate.
 */
export async function startApi(config: Config, log: Logger, services: Services): Promise<RunningServer> {
  await assertLeastPrivilege(services.db, log);
  // Generated on the first start, so `ledgerlock token` and the API agree on one key from then on.
  if (config.mode === 'local' && config.auth.jwksUrl === undefined) await ensureLocalSigningKey(config.dataDir);
  const secrets = webhookSecrets(config);
  const limiter = createRateLimiter({ db: services.db, limits: config.rateLimits, sourceKey: sourceKeyOf(secrets), log });
  const guard = rateLimited(authorize(createTokenVerifier(config), log, services.actorOf), limiter.caller);
  const temporal = lazyServingClient(config, services.dataConverter);
  const relay = startWebhookRelay({ db: services.db, temporal, log, maxBackoffMs: config.stripe.webhookRetryMaxMs });
  const app = createApp({
    log,
    healthChecks: healthChecks({ config, temporal, db: services.db, kms: services.kms, stripe: services.stripe }),
    healthLimit: limiter.processSource,
    routers: [
      createCustomerRouter({ ...services, temporal, taskQueue: config.temporal.taskQueue, authorize: guard }),
      createSubscriptionRouter({
        ...services,
        temporal,
        taskQueue: config.temporal.taskQueue,
        paymentWindowSeconds: config.subscriptions.paymentWindowSeconds,
        authorize: guard,
      }),
      createAuditRouter({ db: services.db, authorize: guard }),
      createKeyRotationRouter({ db: services.db, temporal, config, authorize: guard }),
    ],
    rawBodyRouters: [createStripeWebhookRouter({ db: services.db, secrets, log, limit: limiter.sharedSource, onRecorded: () => relay.kick() })],
  });
  const closeClients = async () => {
    await relay.stop();
    await temporal.connection.close();
  };
  try {
    return await listen(app, config.api, config.apiTls, log, 'api', closeClients);
  } catch (err) {
    await closeClients();
    throw err;
  }
}

/**
 * The HMAC key of source addresses in shared rate-limit buckets: something every API process
 * already holds alike and nobody outside does. While a webhook secret rotates, processes with
 * different lists count an address apart for a while.
 */
function sourceKeyOf(secrets: readonly string[]): string {
  return createHash('sha256').update(`ledgerlock rate-limit source key\n${[...secrets].sort().join('\n')}`).digest('hex');
}

/** Starts the codec server the Temporal Web UI decodes payloads through. */
export async function startCodecServer(config: Config, log: Logger, services: Services): Promise<RunningServer> {
  await assertLeastPrivilege(services.db, log);
  if (config.mode === 'local' && config.auth.jwksUrl === undefined) await ensureLocalSigningKey(config.dataDir);
  const app = createCodecApp({
    codec: services.dataConverter.payloadCodecs![0]!,
    verify: createTokenVerifier(config),
    actorOf: services.actorOf,
    recordAudit: (entry) => appendAuditEntry(services.db, entry),
    corsOrigins: config.codec.corsOrigins,
    secureCookies: config.codec.secureCookies,
    log,
  });
  return listen(app, config.codec, config.apiTls, log, 'codec server', async () => undefined);
}

async function listen(
  app: Express,
  where: { host: string; port: number },
  tls: Config['apiTls'],
  log: Logger,
  name: string,
  closeClients: () => Promise<void>,
): Promise<RunningServer> {
  const server = tls
    ? https.createServer({ cert: readFileSync(tls.certPath), key: readFileSync(tls.keyPath), minVersion: 'TLSv1.3' }, app)
    : http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(where.port, where.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  log.info({ host: where.host, port, tls: tls !== undefined }, `${name} listening`);
  return {
    url: `${tls ? 'https' : 'http'}://${where.host}:${port}`,
    async stop() {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await closeClients();
    },
  };
}

/** The API, the codec server and the workers of one process: what `npm start` runs (and restarts) as its app process. */
export interface RunningApp extends Running {
  readonly apiUrl: string;
  readonly codecUrl: string;
}

/** Starts the workers, then the codec server and the API; on a failure, stops what already started. */
export async function startApp(config: Config, log: Logger, services: Services, workflowBundle?: WorkflowBundleOption): Promise<RunningApp> {
  const started: Running[] = [];
  const stop = async () => {
    for (const running of started.reverse()) await running.stop().catch((err: unknown) => log.error({ reason: errorMessage(err) }, 'stop failed'));
  };
  try {
    started.push(await startWorker(config, log, services, workflowBundle));
    const codec = await startCodecServer(config, log, services);
    started.push(codec);
    const api = await startApi(config, log, services);
    started.push(api);
    return { apiUrl: api.url, codecUrl: codec.url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
