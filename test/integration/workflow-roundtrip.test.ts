import { createLogger } from '../../src/log';
import { randomUUID } from 'node:crypto';
import { Connection, Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { createServices } from '../../src/services';
import { connectClient } from '../../src/temporal/connection';
import { ENCRYPTED_ENCODING } from '../../src/temporal/payload-codec';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { runWorkersUntil } from '../../src/worker/worker';
import { createTestWorkers } from '../support/runtime';
import { testConfig } from '../support/stack';

describe('Temporal dev server', () => {
  it('runs a workflow round trip from a client through a worker and its activity, with payloads encrypted on the server', async () => {
    const config = testConfig({ TEMPORAL_TASK_QUEUE: `roundtrip-${randomUUID()}` });
    const services = createServices(config, createLogger('warn'));
    const client = await connectClient(config, services.dataConverter);
    const { workers, close } = await createTestWorkers(config, 'roundtrip-worker');
    try {
      const nonce = `nonce-${randomUUID()}`;
      const workflowId = `canary-${nonce}`;
      const result = await runWorkersUntil(
        workers,
        client.workflow.execute('canaryWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [{ nonce }] }),
      );
      expect(result).toEqual({ nonce, answeredBy: 'roundtrip-worker' });

      // What the server stored, read without the codec: ciphertext only.
      const raw = new Client({ connection: client.connection, namespace: config.temporal.namespace });
      const history = await raw.workflow.getHandle(workflowId).fetchHistory();
      const payloads = (history.events ?? []).flatMap((e) => [
        ...(e.workflowExecutionStartedEventAttributes?.input?.payloads ?? []),
        ...(e.activityTaskScheduledEventAttributes?.input?.payloads ?? []),
        ...(e.activityTaskCompletedEventAttributes?.result?.payloads ?? []),
        ...(e.workflowExecutionCompletedEventAttributes?.result?.payloads ?? []),
      ]);
      expect(payloads).toHaveLength(4);
      for (const payload of payloads) {
        expect(Buffer.from(payload.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
        expect(Buffer.from(payload.data!).includes(Buffer.from(nonce))).toBe(false);
      }
    } finally {
      await close();
      await client.connection.close();
      await services.close();
    }
  });

  it('has the project search attributes registered', async () => {
    const config = testConfig();
    const connection = await Connection.connect({ address: config.temporal.address });
    try {
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: config.temporal.namespace });
      for (const key of Object.values(SEARCH_ATTRIBUTES)) expect(Object.keys(customAttributes ?? {})).toContain(key.name);
    } finally {
      await connection.close();
    }
  });
});
