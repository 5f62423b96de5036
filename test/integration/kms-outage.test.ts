import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listAuditEntries } from '../../src/audit/audit-dal';
import { ownerDatabaseUrl, type Config } from '../../src/config/config';
import { createDb, type Db } from '../../src/db/database';
import { createKmsClient, ensureMasterKeys } from '../../src/kms/kms-client';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { startLocalServers, type LocalServers } from '../../src/stack/local-servers';
import { freePort } from '../../src/stack/process';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';
import { tokenFor } from '../support/tokens';

/**
 * KMS stops after the API accepted a registration (202) and before the worker could
 * unwrap the customer's data key. The saga waits it out, visible as a pending activity
 * with its last failure, and completes once KMS is back: nothing is compensated, nothing
 * shredded. A KMS of its own (same port and key store across the restart), the real
 * PostgreSQL, Temporal and stripe-mock of the run.
 */
describe('registration while KMS is down', () => {
  let kmsConfig: Config;
  let config: Config;
  let dataDir: string;
  let kms: LocalServers | undefined;
  let api: RunningServer & { services: Services };
  let client: Client;
  let db: Db;

  const startKms = async () => {
    kms = await startLocalServers(kmsConfig, path.join(dataDir, 'logs'));
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-kms-outage-'));
    const port = await freePort();
    // Only the KMS is local here (Temporal and Stripe come from the run's servers): startLocalServers starts just it.
    kmsConfig = testConfig({ LEDGERLOCK_DATA_DIR: dataDir, KMS_ENDPOINT: '', KMS_PORT: String(port) });
    await startKms();
    config = testConfig({ KMS_ENDPOINT: `http://127.0.0.1:${port}`, TEMPORAL_TASK_QUEUE: `kms-outage-${process.pid}` });
    const keys = createKmsClient(kmsConfig);
    await ensureMasterKeys(keys, kmsConfig).finally(() => keys.destroy());
    api = await startTestApi(config);
    client = await connectClient(config, api.services.dataConverter);
    db = createDb(ownerDatabaseUrl(config), { max: 2 });
  });
  afterAll(async () => {
    await client?.connection.close();
    await api?.stop();
    await db?.destroy();
    await kms?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('completes the registration once KMS returns, compensating nothing', { timeout: 180_000 }, async () => {
    const writer = await tokenFor(config, 'svc-signup', ['customers:write']);
    const res = await fetch(`${api.url}/v1/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${writer}`, 'idempotency-key': 'kms-outage-1' },
      body: JSON.stringify({ email: 'kms-outage@example.com', name: 'Kay Emess', country: 'DE' }),
    });
    expect(res.status).toBe(202);
    const { customerId, workflowId } = (await res.json()) as { customerId: string; workflowId: string };

    await kms!.stop();
    kms = undefined;
    // A worker whose data-key cache is empty: it must ask KMS, which is down.
    const workers = await createTestWorkers(config);
    try {
      const handle = client.workflow.getHandle(workflowId);
      const result = await runWorkersUntil(workers.workers, async () => {
        // While KMS stays down the saga cannot move (not even its input can be decrypted), and Temporal
        // keeps retrying its tasks: at least two workflow task attempts or two activity attempts.
        await vi.waitFor(
          async () => {
            const { raw } = await handle.describe();
            const pending = raw.pendingActivities ?? [];
            const taskAttempts = raw.pendingWorkflowTask?.attempt ?? 0;
            expect(Math.max(taskAttempts, ...pending.map((p) => p.attempt ?? 0))).toBeGreaterThanOrEqual(2);
          },
          { timeout: 60_000, interval: 500 },
        );
        for (const worker of workers.workers) expect(worker.getState()).toBe('RUNNING');
        await startKms();
        return handle.result();
      });
      expect(result).toMatchObject({ customerId, stripeCustomerId: expect.stringMatching(/^cus_/) });

      // No attempt limit on any step: an outage longer than any cap would still be waited out.
      const history = await handle.fetchHistory();
      const scheduled = history.events!.filter((e) => e.activityTaskScheduledEventAttributes);
      expect(scheduled.length).toBeGreaterThan(0);
      for (const event of scheduled) expect(event.activityTaskScheduledEventAttributes!.retryPolicy?.maximumAttempts ?? 0).toBe(0);
    } finally {
      await workers.close();
    }

    const row = await db.selectFrom('customers').select(['status', 'stripe_customer_id']).where('id', '=', customerId).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ status: 'active', stripe_customer_id: expect.stringMatching(/^cus_/) });
    const key = await db.selectFrom('data_keys').select('status').where('customer_id', '=', customerId).executeTakeFirstOrThrow();
    expect(key.status).toBe('active');
    const entries = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.subjectId === customerId);
    expect(entries.filter((e) => e.action === 'saga.compensation')).toEqual([]);
  });
});
