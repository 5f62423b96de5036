import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/config';
import { createDb, dropDatabase, ensureDatabase, type Db } from '../../src/db/database';
import { migrate } from '../../src/db/migrate';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { freeLocalPorts, startLocalServers, type LocalServers } from '../../src/stack/local-servers';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { quietTemporalRuntime, startSignalRecorders, type SignalRecorders } from '../support/signal-recorder';
import { startTestApi } from '../support/runtime';
import { testConfig, testStack } from '../support/stack';
import { invoiceEvent, newSubscriptionId, signedHeaders, subscriptionEvent, TEST_WEBHOOK_SECRET } from '../support/stripe-events';

/**
 * Temporal stops in the middle of a burst of webhooks and comes back. A Temporal dev server
 * of its own (its SQLite file survives the restart) and a database of its own, so the
 * other suites' relays never touch these rows.
 */
describe('webhooks while Temporal is down', () => {
  let config: Config;
  let dataDir: string;
  let temporal: LocalServers | undefined;
  let api: RunningServer & { services: Services };
  let recorders: SignalRecorders;
  let db: Db;
  let restartTemporal: () => Promise<void>;
  const subs = Array.from({ length: 10 }, () => newSubscriptionId());

  beforeAll(async () => {
    quietTemporalRuntime();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-outage-'));
    const url = new URL(testStack().databaseUrl);
    url.pathname = `${url.pathname}_outage`;
    // A restart keeps every port: the same address for the API and the workers.
    const ports = await freeLocalPorts();
    config = testConfig({
        LEDGERLOCK_DATA_DIR: dataDir,
        DATABASE_URL: url.toString(),
        // Unset: the stack's own dev server, on ports of its own.
        TEMPORAL_ADDRESS: '',
        TEMPORAL_PORT: ports.TEMPORAL_PORT,
        TEMPORAL_UI_PORT: ports.TEMPORAL_UI_PORT,
        TEMPORAL_UI_BACKEND_PORT: ports.TEMPORAL_UI_BACKEND_PORT,
        TEMPORAL_HTTP_PORT: ports.TEMPORAL_HTTP_PORT,
        TEMPORAL_METRICS_PORT: ports.TEMPORAL_METRICS_PORT,
        STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
        STRIPE_WEBHOOK_RETRY_MAX_SECONDS: '1',
      });
    restartTemporal = async () => {
      temporal = await startLocalServers(config, path.join(dataDir, 'logs'));
    };
    await restartTemporal();
    expect(config.temporal.devServer).toBeDefined();
    await ensureDatabase(config.databaseUrl!);
    db = createDb(config.databaseUrl!, { max: 2 });
    await migrate(db);

    api = await startTestApi(config);
    recorders = await startSignalRecorders(config, api.services);
    for (const sub of subs) await recorders.start(sub);
  });
  afterAll(async () => {
    await recorders?.stop(subs);
    await api?.stop();
    await temporal?.stop();
    await db?.destroy();
    if (config) await dropDatabase(config.databaseUrl!);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('acknowledges every event while Temporal is stopped, then delivers each exactly once when it returns', async () => {
    const unique = Array.from({ length: 300 }, (_, i) => {
      const sub = subs[i % subs.length]!;
      const event =
        i % 2 === 0
          ? invoiceEvent({ type: 'invoice.paid', subscriptionId: sub })
          : subscriptionEvent({ type: 'customer.subscription.updated', subscriptionId: sub, paymentMethodId: `pm_${i}`, previousPaymentMethodId: 'pm_before' });
      return { sub, id: event.id as string, body: JSON.stringify(event) };
    });
    const deliveries = [...unique, ...Array.from({ length: 90 }, () => unique[Math.floor(Math.random() * unique.length)]!)].sort(() => Math.random() - 0.5);
    const send = async (batch: typeof deliveries) => {
      const queue = [...batch];
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let next = queue.shift(); next; next = queue.shift()) {
            const response = await fetch(`${api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(next.body), body: next.body });
            statuses.push(response.status);
            await response.arrayBuffer();
          }
        }),
      );
      return statuses;
    };

    const third = Math.floor(deliveries.length / 3);
    const before = await send(deliveries.slice(0, third));
    await temporal!.stop();
    temporal = undefined;
    const during = await send(deliveries.slice(third));
    expect([...before, ...during].filter((status) => status !== 200)).toEqual([]);

    // Recorded, and waiting for Temporal: the relay has tried and failed.
    await vi.waitFor(
      async () => {
        const waiting = await db.selectFrom('stripe_events').select(['event_id', 'last_error']).where('status', '=', 'pending').where('attempts', '>', 0).execute();
        expect(waiting.length).toBeGreaterThan(0);
        for (const row of waiting) expect(row.last_error).toMatch(/^temporal: /);
      },
      { timeout: 30_000, interval: 250 },
    );
    const pendingWhileDown = await db.selectFrom('stripe_events').select('event_id').where('status', '=', 'pending').execute();
    expect(pendingWhileDown.length).toBeGreaterThan(0);

    await restartTemporal();
    await vi.waitFor(
      async () => {
        const rows = await db.selectFrom('stripe_events').select(['status']).execute();
        expect(rows).toHaveLength(unique.length);
        expect(rows.filter((r) => r.status !== 'delivered')).toEqual([]);
      },
      { timeout: 90_000, interval: 500 },
    );

    const expected = new Map<string, Record<string, number>>(subs.map((s) => [s, {}]));
    for (const u of unique) expected.get(u.sub)![u.id] = 1;
    for (const sub of subs) {
      await vi.waitFor(async () => expect((await recorders.received(sub)).counts).toEqual(expected.get(sub)), { timeout: 30_000, interval: 500 });
    }
  });
});
