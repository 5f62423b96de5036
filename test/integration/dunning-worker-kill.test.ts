import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/config';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { connectClient } from '../../src/temporal/connection';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { dunningStateQuery, dunningWorkflowId, type DunningView } from '../../workflows/dunning-contracts';
import { subscriptionStateQuery, subscriptionWorkflowId } from '../../workflows/subscription-contracts';
import { findSubscription } from '../../src/subscriptions/subscription-dal';
import { startRecordingProxy } from '../support/recording-proxy';
import { startTestApi } from '../support/runtime';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { testConfig, testEnv, testStack } from '../support/stack';
import { invoiceEvent, signedHeaders, TEST_WEBHOOK_SECRET } from '../support/stripe-events';
import { tokenFor } from '../support/tokens';

/**
 * The whole path for real: a subscription created through the API, a signed
 * invoice.payment_failed webhook, the campaign it starts (policy from DUNNING_POLICY),
 * and the worker process killed (SIGKILL) while the campaign waits for its retry. A new
 * worker takes over, and the retry happens when it was due, not later.
 */
describe('a dunning campaign when its worker is killed during a wait', () => {
  const taskQueue = `dunning-kill-${process.pid}`;
  const RETRY_AFTER_SECONDS = 25;
  const overrides: Record<string, string> = {
    TEMPORAL_TASK_QUEUE: taskQueue,
    STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
    DUNNING_POLICY: JSON.stringify({ retryOffsetsSeconds: [RETRY_AFTER_SECONDS, 3600], gracePeriodSeconds: 3600, finalAction: 'leave_past_due' }),
  };
  let config: Config;
  let api: RunningServer & { services: Services };
  let client: Client;
  let worker: SpawnedCli | undefined;
  let token: string;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let stripeSubscriptionId: string | undefined;

  const startWorker = async () => {
    const started = spawnCli(['worker'], testEnv({ ...overrides, LOG_LEVEL: 'info' }));
    await started.waitFor('worker polling', 60_000);
    return started;
  };

  beforeAll(async () => {
    // A failed payment is believed only for an unpaid invoice of the subscription at Stripe. stripe-mock keeps
    // no state, so a proxy answers for every invoice asked about what real Stripe would hold: one of ours, open.
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    proxy.rewriteAnswers(
      (method, path) => method === 'GET' && /^\/v1\/invoices\/in_[A-Za-z0-9_]+$/.test(path),
      (invoice) => ({ ...invoice, parent: { type: 'subscription_details', subscription_details: { metadata: {}, subscription: stripeSubscriptionId } }, status: 'open', amount_paid: 0 }),
    );
    overrides.STRIPE_API_URL = proxy.url;
    config = testConfig(overrides);
    [api, worker] = await Promise.all([startTestApi(config), startWorker()]);
    client = await connectClient(config, api.services.dataConverter);
    token = await tokenFor(config, 'svc-billing', ['subscriptions:write', 'subscriptions:read']);
  });
  afterAll(async () => {
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await client?.connection.close();
    await api?.stop();
    await proxy?.close();
  });

  it('retries on time after a new worker takes over', async () => {
    const created = await fetch(`${api.url}/v1/subscriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `kill-${randomUUID()}` },
      body: JSON.stringify({ customer: { email: 'kill@example.com', name: 'Kil Led', country: 'NL' }, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }),
    });
    expect(created.status).toBe(202);
    const { subscriptionId } = (await created.json()) as { subscriptionId: string };
    const subscription = client.workflow.getHandle(subscriptionWorkflowId(subscriptionId));
    await vi.waitFor(async () => expect((await subscription.query(subscriptionStateQuery)).status).toBe('active'), { timeout: 45_000, interval: 250 });
    stripeSubscriptionId = (await findSubscription(api.services.db, subscriptionId))!.stripe_subscription_id!;

    const body = JSON.stringify(invoiceEvent({ type: 'invoice.payment_failed', subscriptionId, invoiceId: 'in_killtest1' }));
    expect((await fetch(`${api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body), body })).status).toBe(200);

    // The campaign has sent its notice and told the subscription: it is waiting on its timer.
    const waiting = await vi.waitFor(
      async () => {
        const view = await subscription.query(subscriptionStateQuery);
        const campaign = view.dunning.find((d) => d.invoiceId === 'in_killtest1');
        expect(campaign).toMatchObject({ state: 'retrying', attempt: 1 });
        expect(campaign!.nextAttemptAt).not.toBeNull();
        return campaign!;
      },
      { timeout: 30_000, interval: 250 },
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    worker!.child.kill('SIGKILL');
    await worker!.exited;
    expect(Date.now()).toBeLessThan(waiting.nextAttemptAt!);
    worker = await startWorker();

    const campaign = client.workflow.getHandle(dunningWorkflowId(subscriptionId, 'in_killtest1'));
    const retried = await vi.waitFor(
      async () => {
        const view: DunningView = await campaign.query(dunningStateQuery);
        expect(view.history).toHaveLength(1);
        return view;
      },
      { timeout: RETRY_AFTER_SECONDS * 1000 + 30_000, interval: 250 },
    );
    const [first] = retried.history;
    expect(first).toMatchObject({ attempt: 1, trigger: 'schedule' });
    // On time: not before it was due, and within seconds of it (a lost timer or an activity timeout would be much later).
    expect(first!.at).toBeGreaterThanOrEqual(waiting.nextAttemptAt!);
    expect(first!.at - waiting.nextAttemptAt!).toBeLessThan(10_000);
    await campaign.terminate('test over');
    await subscription.terminate('test over');
  });
});
