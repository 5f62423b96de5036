import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { appendAuditEntry } from './audit/audit-dal';
import { startConfiguredCheckpointer } from './audit/audit-checkpoints';
import { assertLeastPrivilege } from './db/least-privilege';
import { createAuditRouter } from './audit/audit-routes';
import { ensureKeyRotationSchedule } from './keys/key-rotation-service';
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
import { errorMessage, type Logger } from './log';
import type { Services } from './services';
import { connectClient, connectWorker } from './temporal/connection';
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

/**
 * Starts the workers (general and Stripe task queues) and the audit checkpointer, and
 * resolves once they poll. `stop` drains in-flight tasks first, then checkpoints.
 */
export async function startWorker(
  config: Config,
  log: Logger,
  services: Services,
  workflowBundle?: WorkflowBundleWithSourceMap,
): Promise<Running> {
  await assertLeastPrivilege(services.db, log);
  // The rotation schedule exists wherever workers run; creating it again only updates it.
  const client = await connectClient(config, services.dataConverter);
  try {
    await ensureKeyRotationSchedule(client, config, log);
  } finally {
    await client.connection.close();
  }
  const connection = await connectWorker(config);
  try {
    const workers = await createWorkers({
      config,
      connection,
      dataConverter: services.dataConverter,
      deps: { identity: `${process.pid}@${os.hostname()}`, ...services, config, log },
      ...(workflowBundle ? { workflowBundle } : {}),
    });
    const running = workers.map((worker) => {
      const run = worker.run();
      run.catch((err: unknown) => log.error('worker stopped', { taskQueue: worker.options.taskQueue, reason: errorMessage(err) }));
      return run;
    });
    log.info('worker polling', { taskQueues: workers.map((w) => w.options.taskQueue).join(',') });
    // Workers outlive API processes and run wherever Ledgerlock runs: they sign the audit chain's head.
    const checkpointer = startConfiguredCheckpointer(config, { db: services.db, kms: services.kms, log });
    return {
      async stop() {
        for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
        await Promise.all(running.map((run) => run.catch(() => undefined)));
        // After the last activity: its audit entries get their checkpoint.
        await checkpointer.stop();
        await connection.close();
      },
    };
  } catch (err) {
    await connection.close();
    throw err;
  }
}

/**
 * Starts the HTTP API and the webhook relay that delivers recorded Stripe events to their
 * workflows; resolves once it listens. HTTPS with TLS 1.3 at least when given a certificate.
 */
export async function startApi(config: Config, log: Logger, services: Services): Promise<RunningServer> {
  await assertLeastPrivilege(services.db, log);
  // Generated on the first start, so `ledgerlock token` and the API agree on one key from then on.
  if (config.mode === 'local' && config.auth.jwksUrl === undefined) await ensureLocalSigningKey(config.dataDir);
  const guard = authorize(createTokenVerifier(config), log);
  const secrets = webhookSecrets(config);
  const temporal = await connectClient(config, services.dataConverter);
  const relay = startWebhookRelay({ db: services.db, temporal, log, maxBackoffMs: config.stripe.webhookRetryMaxMs });
  const app = createApp({
    log,
    healthChecks: healthChecks({ config, temporal, db: services.db, kms: services.kms, stripe: services.stripe }),
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
    rawBodyRouters: [createStripeWebhookRouter({ db: services.db, secrets, log, onRecorded: () => relay.kick() })],
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

/** Starts the codec server the Temporal Web UI decodes payloads through. */
export async function startCodecServer(config: Config, log: Logger, services: Services): Promise<RunningServer> {
  await assertLeastPrivilege(services.db, log);
  if (config.mode === 'local' && config.auth.jwksUrl === undefined) await ensureLocalSigningKey(config.dataDir);
  const app = createCodecApp({
    codec: services.dataConverter.payloadCodecs![0]!,
    verify: createTokenVerifier(config),
    recordAudit: (entry) => appendAuditEntry(services.db, entry),
    corsOrigins: config.codec.corsOrigins,
    secureCookies: config.apiTls !== undefined,
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
  log.info(`${name} listening`, { host: where.host, port, tls: tls !== undefined });
  return {
    url: `${tls ? 'https' : 'http'}://${where.host}:${port}`,
    async stop() {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await closeClients();
    },
  };
}
