import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/database';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { createWorker } from '../../src/worker/worker';
import { testConfig } from '../support/stack';

describe('Temporal dev server', () => {
  it('runs a workflow round trip from a client through a worker and its activity', async () => {
    const config = testConfig({ TEMPORAL_TASK_QUEUE: `roundtrip-${randomUUID()}` });
    const client = await connectClient(config);
    const connection = await connectWorker(config);
    const db = createDb(config.databaseUrl, { role: config.databaseAppRole });
    try {
      const worker: Worker = await createWorker({ config, connection, deps: { identity: 'roundtrip-worker', db } });
      const nonce = randomUUID();
      const result = await worker.runUntil(
        client.workflow.execute('canaryWorkflow', {
          taskQueue: config.temporal.taskQueue,
          workflowId: `canary-${nonce}`,
          args: [{ nonce }],
        }),
      );
      expect(result).toEqual({ nonce, answeredBy: 'roundtrip-worker' });
    } finally {
      await connection.close();
      await client.connection.close();
      await db.destroy();
    }
  });

  it('has the project search attributes registered', async () => {
    const config = testConfig();
    const client = await connectClient(config);
    try {
      const { customAttributes } = await client.connection.operatorService.listSearchAttributes({
        namespace: config.temporal.namespace,
      });
      for (const key of Object.values(SEARCH_ATTRIBUTES)) expect(Object.keys(customAttributes ?? {})).toContain(key.name);
    } finally {
      await client.connection.close();
    }
  });
});
