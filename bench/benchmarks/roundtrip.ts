import { createLogger } from '../../src/log';
import { randomUUID } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config/config';
import { createServices } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { createWorkers, runWorkersUntil } from '../../src/worker/worker';
import { envFor, startTestServers } from '../../test/support/servers';
import { runConcurrently, type BenchResult } from '../lib';

const WORKFLOWS = 400;
const CONCURRENCY = 20;

/**
 * Canary workflow round trips per second (client → server → worker → activity → result,
 * every payload through the KMS codec) through the dev server, against plain gRPC round
 * trips (DescribeNamespace) to the same server at the same concurrency.
 */
export async function roundTripBenchmark(): Promise<BenchResult> {
  const { stack, stop } = await startTestServers('bench');
  try {
    const config = loadConfig(envFor(stack, { TEMPORAL_TASK_QUEUE: `bench-${randomUUID()}` }));
    const { workflowsPerSecond, rpcsPerSecond } = await measureRoundTrips(config);
    return {
      name: 'workflow-roundtrip',
      description: `${WORKFLOWS} canary workflows (one activity each, payloads encrypted), ${CONCURRENCY} in flight, through the Temporal dev server`,
      measured: { label: 'workflow round trips', value: workflowsPerSecond, unit: '/s' },
      baseline: { label: 'DescribeNamespace gRPC round trips', value: rpcsPerSecond, unit: '/s' },
      ratio: workflowsPerSecond / rpcsPerSecond,
      ratioMeaning: 'workflow round trips per bare gRPC round trip (higher is better)',
    };
  } finally {
    await stop();
  }
}

/**
 * Against the Temporal `config` names, with a worker in this process: canary workflow round
 * trips per second (after a warm-up), and DescribeNamespace gRPC round trips per second,
 * both with `workflows` and CONCURRENCY in flight.
 */
export async function measureRoundTrips(config: Config, workflows = WORKFLOWS): Promise<{ workflowsPerSecond: number; rpcsPerSecond: number }> {
  const services = createServices(config, createLogger('warn'));
  const client = await connectClient(config, services.dataConverter);
  const connection = await connectWorker(config);
  try {
    const workers = await createWorkers({ config, connection, dataConverter: services.workerDataConverter, deps: { identity: 'bench', ...services, config } });
    const execute = (i: number) =>
      client.workflow.execute('canaryWorkflow', { taskQueue: config.temporal.taskQueue, workflowId: `bench-${i}-${randomUUID()}`, args: [{ nonce: String(i) }] });
    const seconds = await runWorkersUntil(workers, async () => {
      await runConcurrently(20, CONCURRENCY, execute);
      return runConcurrently(workflows, CONCURRENCY, execute);
    });
    const rpcSeconds = await runConcurrently(workflows * 5, CONCURRENCY, () =>
      client.workflowService.describeNamespace({ namespace: config.temporal.namespace }),
    );
    return { workflowsPerSecond: workflows / seconds, rpcsPerSecond: (workflows * 5) / rpcSeconds };
  } finally {
    await connection.close();
    await client.connection.close();
    await services.close();
  }
}
