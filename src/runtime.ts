import http from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Config } from './config/config';
import { createDb } from './db/database';
import { healthChecks } from './health/health';
import { createApp } from './http/app';
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
  const worker = await createWorker({
    config,
    connection,
    deps: { identity: `${process.pid}@${os.hostname()}` },
    ...(workflowBundle ? { workflowBundle } : {}),
  });
  const running = worker.run();
  running.catch((err) => log.error('worker stopped', { reason: String(err) }));
  log.info('worker polling', { taskQueue: config.temporal.taskQueue });
  return {
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      await connection.close();
    },
  };
}

export interface RunningApi extends Running {
  readonly url: string;
}

/** Starts the HTTP API and its clients; resolves once it listens. */
export async function startApi(config: Config, log: Logger): Promise<RunningApi> {
  const db = createDb(config.databaseUrl);
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
