import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Config } from '../../src/config/config';
import type { Services } from '../../src/services';
import { subscriptionWorkflowId } from '../../workflows/subscription-contracts';
import { receivedQuery, type Received } from '../workflows/signal-recorder';
import { silentLogger } from './runtime';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/**
 * Errors only from the SDK's runtime: a suite that stops Temporal on purpose would
 * otherwise print every retried poll. Call before the first worker of the test file.
 */
export function quietTemporalRuntime(): void {
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
}

/**
 * A worker running signal recorders (test/workflows/signal-recorder.ts) at subscriptions'
 * workflow ids, on a task queue of its own, with the application's data converter so it
 * reads the encrypted signals the relay sends.
 */
export async function startSignalRecorders(config: Config, services: Pick<Services, 'dataConverter'>) {
  bundle ??= bundleWorkflowCode({ workflowsPath: path.resolve(__dirname, '../workflows/signal-recorder.ts'), logger: silentLogger });
  const taskQueue = `recorders-${process.pid}-${Date.now().toString(36)}`;
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue,
    workflowBundle: await bundle,
    dataConverter: services.dataConverter,
  });
  const running = worker.run();
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace, dataConverter: services.dataConverter });
  return {
    worker,
    running,
    client,
    async start(subscriptionId: string): Promise<void> {
      await client.workflow.start('signalRecorderWorkflow', { taskQueue, workflowId: subscriptionWorkflowId(subscriptionId), args: [] });
    },
    received(subscriptionId: string): Promise<Received> {
      return client.workflow.getHandle(subscriptionWorkflowId(subscriptionId)).query(receivedQuery);
    },
    async stop(subscriptionIds: readonly string[] = []): Promise<void> {
      await Promise.all(subscriptionIds.map((id) => client.workflow.getHandle(subscriptionWorkflowId(id)).terminate('test over').catch(() => undefined)));
      worker.shutdown();
      await running.catch(() => undefined);
      await connection.close();
      await clientConnection.close();
    },
  };
}

export type SignalRecorders = Awaited<ReturnType<typeof startSignalRecorders>>;
