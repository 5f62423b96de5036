import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ensureLocalSigningKey } from './auth/signing-keys';
import type { Config } from './config/config';
import { createDb } from './db/database';
import { healthChecks } from './health/health';
import { createApp } from './http/app';
import { createAuthorizer } from './http/auth';
import { createKmsClient } from './kms/kms-client';
import type { Logger } from './log';
import { createStripe } from './stripe/stripe-client';
import { connectClient, connectWorker } from './temporal/connection';
import { createWorker } from './worker/worker';

export interface Running {
  stop(): Promise<void>;
}

/** Starts the worker and resolves once it polls. `stop` drains in-flight tasks first. */
export async function startWorker(
  config: Config,
  log: Logger,
  workflowBundle?: WorkflowBundleWithSourceMap,
): Promise<Running> {
  const connection = await connectWorker(config);
  // As the application role: activities may append to the audit trail but never rewrite it.
  const db = createDb(config.databaseUrl, { role: config.databaseAppRole });
  const worker = await createWorker({
    config,
    connection,
    deps: { identity: `${process.pid}@${os.hostname()}`, db },
    ...(workflowBundle ? { workflowBundle } : {}),
  }).catch(async (err: unknown) => {
    await db.destroy();
    throw err;
  });
  const running = worker.run();
  running.catch((err) => log.error('worker stopped', { reason: String(err) }));
  log.info('worker polling', { taskQueue: config.temporal.taskQueue });
  return {
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      await Promise.all([connection.close(), db.destroy()]);
    },
  };
}

export interface RunningApi extends Running {
  readonly url: string;
}

/** Starts the HTTP API and its clients; resolves once it listens. */
export async function startApi(config: Config, log: Logger): Promise<RunningApi> {
  // Generated on the first start, so `ledgerlock token` and the API agree on one key from then on.
  if (config.mode === 'local' && config.auth.jwksUrl === undefined) await ensureLocalSigningKey(config.dataDir);
  // Feature routers take `authorize` as their dependency: `router.get(path, ...authorize(scope), handler)`.
  const authorize = createAuthorizer(config, log);
  const db = createDb(config.databaseUrl, { role: config.databaseAppRole });
  const kms = createKmsClient(config);
  const stripe = createStripe(config);
  const temporal = await connectClient(config);
  const app = createApp({ log, healthChecks: healthChecks({ config, temporal, db, kms, stripe }) });
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.api.port, config.api.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  log.info('api listening', { host: config.api.host, port });
  return {
    url: `http://${config.api.host}:${port}`,
    async stop() {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([db.destroy(), temporal.connection.close()]);
      kms.destroy();
    },
  };
}
