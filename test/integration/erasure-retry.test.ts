import { ownerDatabaseUrl } from '../../src/config/config';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listAuditEntries } from '../../src/audit/audit-dal';
import { createDb, type Db } from '../../src/db/database';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';
import { tokenFor } from '../support/tokens';

/**
 * An erasure that fails (here: an operator terminated it before it ran) is not the end:
 * the same DELETE starts it again and it finishes; GET tells each state with a reason
 * code and releases nothing personal meanwhile; every request is audited on arrival.
 */
describe('erasure can be retried', () => {
  const config = () => testConfig({ TEMPORAL_TASK_QUEUE: `erasure-retry-${process.pid}` });
  let api: RunningServer & { services: Services };
  let client: Client;
  let db: Db;
  let writer: string;
  let reader: string;
  let eraser: string;

  /** Runs a worker of the test's queues until `until` settles. */
  const withWorkers = async <T>(until: () => Promise<T>): Promise<T> => {
    const workers = await createTestWorkers(config());
    try {
      return await runWorkersUntil(workers.workers, until);
    } finally {
      await workers.close();
    }
  };

  beforeAll(async () => {
    const cfg = config();
    api = await startTestApi(cfg);
    client = await connectClient(cfg, api.services.dataConverter);
    db = createDb(ownerDatabaseUrl(cfg), { max: 2 });
    writer = await tokenFor(cfg, 'svc-signup', ['customers:write']);
    reader = await tokenFor(cfg, 'svc-support', ['customers:read']);
    eraser = await tokenFor(cfg, 'svc-privacy', ['customers:erase']);
  });
  afterAll(async () => {
    await client?.connection.close();
    await api?.stop();
    await db?.destroy();
  });

  const get = (id: string) => fetch(`${api.url}/v1/customers/${id}`, { headers: { authorization: `Bearer ${reader}`, 'ledgerlock-purpose': 'erasure check' } });
  const erase = (id: string) =>
    fetch(`${api.url}/v1/customers/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${eraser}`, 'ledgerlock-purpose': 'GDPR art. 17 request 7' } });

  it('re-runs a failed erasure on the same DELETE, and tells erasing, erasure_failed and erased', async () => {
    const created = await fetch(`${api.url}/v1/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${writer}`, 'idempotency-key': 'erasure-retry-1' },
      body: JSON.stringify({ email: 'retry-erasure@example.com', name: 'Retry Erasure', country: 'FR' }),
    });
    expect(created.status).toBe(202);
    const { customerId, workflowId: registration } = (await created.json()) as { customerId: string; workflowId: string };
    await withWorkers(() => client.workflow.getHandle(registration).result());

    // No worker polls now: the erasure waits, and GET says so without releasing the profile.
    const first = await erase(customerId);
    expect(first.status).toBe(202);
    const { workflowId } = (await first.json()) as { workflowId: string };
    const erasing = await get(customerId);
    expect(erasing.status).toBe(200);
    const erasingBody = (await erasing.json()) as Record<string, unknown>;
    expect(erasingBody).toEqual({ id: customerId, status: 'erasing' });

    // A second DELETE while it runs is the same erasure.
    const again = await erase(customerId);
    expect(again.status).toBe(202);
    const runs = async () => {
      const ids: string[] = [];
      for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(run.runId);
      return ids;
    };

    await client.workflow.getHandle(workflowId).terminate('operator stopped it');
    const failed = await get(customerId);
    expect(failed.status).toBe(200);
    expect(await failed.json()).toEqual({ id: customerId, status: 'erasure_failed', erasure: { reason: 'terminated' } });

    const retried = await erase(customerId);
    expect(retried.status).toBe(202);
    expect(((await retried.json()) as { status: string }).status).toBe('erasing');
    expect(await withWorkers(() => client.workflow.getHandle(workflowId).result())).toEqual({ dataKeysDestroyed: 1, stripeCustomerDeleted: true });

    const gone = await get(customerId);
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as { customerStatus: string }).customerStatus).toBe('erased');
    // Done is done: another DELETE does not run it a third time.
    const afterwards = await erase(customerId);
    expect(afterwards.status).toBe(200);
    expect(((await afterwards.json()) as { status: string }).status).toBe('erased');
    // Visibility is eventually consistent: wait for it to list both runs, and never a third.
    await vi.waitFor(async () => expect(await runs()).toHaveLength(2), { timeout: 10_000, interval: 200 });

    const entries = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.subjectId === customerId);
    expect(entries.filter((e) => e.action === 'customer.erasure_requested')).toHaveLength(4);
    expect(entries.filter((e) => e.action === 'customer.erasure_requested').every((e) => e.actor === 'svc-privacy' && e.purpose === 'GDPR art. 17 request 7')).toBe(true);
    expect(entries.filter((e) => e.action === 'customer.erased')).toHaveLength(1);
  });
});
