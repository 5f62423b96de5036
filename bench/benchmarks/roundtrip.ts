import { randomUUID } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { loadConfig } from '../../src/config/config';
import { createDb } from '../../src/db/database';
import { freePort } from '../../src/stack/process';
import { serverPath } from '../../src/stack/servers';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { createWorker } from '../../src/worker/worker';
import { runConcurrently, type BenchResult } from '../lib';

const WORKFLOWS = 400;
const CONCURRENCY = 20;

/**
 * Canary workflow round trips per second (client → server → worker → activity → result)
 * through the dev server, against plain gRPC round trips (DescribeNamespace) to the same
 * server at the same concurrency.
 */
export async function roundTripBenchmark(env: { toolsDir: string }): Promise<BenchResult> {
  const port = await freePort();
  const server = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: serverPath('temporal', env.toolsDir) }, ip: '127.0.0.1', port, ui: false },
  });
  const config = loadConfig({
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    TEMPORAL_TASK_QUEUE: `bench-${randomUUID()}`,
    KMS_ENDPOINT: 'http://127.0.0.1:1',
    STRIPE_API_URL: 'http://127.0.0.1:1',
  });
  const client = await connectClient(config);
  const connection = await connectWorker(config);
  // The canary activity never queries it, and a pool connects only on a first query.
  const db = createDb(config.databaseUrl, { role: config.databaseAppRole });
  try {
    const worker = await createWorker({ config, connection, deps: { identity: 'bench', db } });
    const warmUp = 20;
    const seconds = await worker.runUntil(async () => {
      const execute = (i: number) =>
        client.workflow.execute('canaryWorkflow', { taskQueue: config.temporal.taskQueue, workflowId: `bench-${i}-${randomUUID()}`, args: [{ nonce: String(i) }] });
      await runConcurrently(warmUp, CONCURRENCY, execute);
      return runConcurrently(WORKFLOWS, CONCURRENCY, execute);
    });
    const rpcSeconds = await runConcurrently(WORKFLOWS * 5, CONCURRENCY, () =>
      client.workflowService.describeNamespace({ namespace: config.temporal.namespace }),
    );
    const workflowsPerSecond = WORKFLOWS / seconds;
    const rpcsPerSecond = (WORKFLOWS * 5) / rpcSeconds;
    return {
      name: 'workflow-roundtrip',
      description: `${WORKFLOWS} canary workflows (one activity each), ${CONCURRENCY} in flight, through the Temporal dev server`,
      measured: { label: 'workflow round trips', value: workflowsPerSecond, unit: '/s' },
      baseline: { label: 'DescribeNamespace gRPC round trips', value: rpcsPerSecond, unit: '/s' },
      ratio: workflowsPerSecond / rpcsPerSecond,
      ratioMeaning: 'workflow round trips per bare gRPC round trip (higher is better)',
    };
  } finally {
    await connection.close();
    await client.connection.close();
    await db.destroy();
    await server.teardown();
  }
}
