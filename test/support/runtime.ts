import type { Worker } from '@temporalio/worker';
import type { Config } from '../../src/config/config';
import { createLogger, type Logger } from '../../src/log';
import { startApi, type RunningServer } from '../../src/runtime';
import { createServices, type Services } from '../../src/services';
import { connectWorker } from '../../src/temporal/connection';
import { createWorkers } from '../../src/worker/worker';
import { testConfig } from './stack';

export const quietLog: Logger = createLogger('error');

/** A logger for the workflow bundler (and other SDK parts) that says nothing: test output stays readable. */
export const silentLogger = { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, log: () => undefined };

/** The API on a free port, with services of its own; `stop` closes both. */
export async function startTestApi(config: Config = testConfig(), log: Logger = quietLog): Promise<RunningServer & { services: Services }> {
  const services = createServices(config, quietLog);
  const api = await startApi(config, log, services).catch(async (err: unknown) => {
    await services.close();
    throw err;
  });
  return {
    url: api.url,
    services,
    async stop() {
      await api.stop();
      await services.close();
    },
  };
}

/** Both workers of `config`'s task queues; the caller runs them (runWorkersUntil) and then calls `close`. */
export async function createTestWorkers(config: Config, identity = 'test-worker'): Promise<{ workers: Worker[]; services: Services; close(): Promise<void> }> {
  const services = createServices(config, quietLog);
  const connection = await connectWorker(config);
  const workers = await createWorkers({ config, connection, dataConverter: services.workerDataConverter, deps: { identity, ...services, config } });
  return {
    workers,
    services,
    async close() {
      await connection.close();
      await services.close();
    },
  };
}
