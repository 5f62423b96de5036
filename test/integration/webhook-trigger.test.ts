import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/config';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { ensureLocalWebhookSecret } from '../../src/webhooks/webhook-secrets';
import { runWorkersUntil } from '../../src/worker/worker';
import { startRecordingProxy } from '../support/recording-proxy';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { spawnCli } from '../support/spawn';
import { testConfig, testEnv, testStack } from '../support/stack';
import { invoiceEvent, signedHeaders } from '../support/stripe-events';
import { tokenFor } from '../support/tokens';

/**
 * Webhooks driving a real subscription: the saga creates it at stripe-mock, then
 * `ledgerlock stripe trigger` posts signed events about it (signed with the data folder's
 * generated secret, as on `npm start`), and the subscription's workflow follows them,
 * never backwards on an older event. A payment or a cancellation is acted on only once
 * Stripe confirms it: stripe-mock keeps no state, so a proxy in front of it answers, for the
 * invoices and the subscription the test names, what real Stripe would then hold.
 */
describe('webhooks driving a subscription', () => {
  const taskQueue = `webhook-trigger-${process.pid}`;
  let config: Config;
  let api: RunningServer & { services: Services };
  let workers: Awaited<ReturnType<typeof createTestWorkers>>;
  let stopWorkers: () => void;
  let running: Promise<unknown>;
  let token: string;
  let subscriptionId: string;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  // What "Stripe" holds: invoices paid (of our subscription), and whether the subscription ended.
  const paidInvoices = new Set<string>();
  let canceledAtStripe = false;
  let stripeSubscriptionId: string | undefined;

  beforeAll(async () => {
    // No STRIPE_WEBHOOK_SECRET: the API and the CLI share the data folder's generated one.
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    proxy.rewriteAnswers(
      (method, path) => method === 'GET' && /^\/v1\/invoices\/in_[A-Za-z0-9_]+$/.test(path),
      // Every invoice asked about is one of the subscription's: open and unpaid, or paid once the test says so.
      (invoice) => ({
        ...invoice,
        parent: { type: 'subscription_details', subscription_details: { metadata: {}, subscription: stripeSubscriptionId } },
        ...(paidInvoices.has(invoice.id)
          ? { status: 'paid', amount_paid: 1500, currency: 'eur', status_transitions: { ...invoice.status_transitions, paid_at: Math.floor(Date.now() / 1000) } }
          : { status: 'open', amount_paid: 0 }),
      }),
    );
    proxy.rewriteAnswers(
      (method, path) => method === 'GET' && /^\/v1\/subscriptions\/sub_[A-Za-z0-9_]+$/.test(path),
      (subscription) => (canceledAtStripe ? { ...subscription, status: 'canceled' } : subscription),
    );
    config = testConfig({ TEMPORAL_TASK_QUEUE: taskQueue, STRIPE_WEBHOOK_RETRY_MAX_SECONDS: '1', STRIPE_API_URL: proxy.url });
    expect(config.stripe.webhookSecrets).toBeUndefined();
    workers = await createTestWorkers(config);
    running = runWorkersUntil(workers.workers, new Promise<void>((resolve) => (stopWorkers = resolve)));
    api = await startTestApi(config);
    token = await tokenFor(config, 'svc-billing', ['subscriptions:write', 'subscriptions:read']);
  });
  afterAll(async () => {
    stopWorkers?.();
    await running;
    await workers?.close();
    await api?.stop();
    await proxy?.close();
  });

  /** Waits until every event of the subscription has been delivered to its workflow. */
  const allDelivered = () =>
    vi.waitFor(
      async () => {
        const rows = await api.services.db.selectFrom('stripe_events').select('status').where('subscription_id', '=', subscriptionId).where('status', '=', 'pending').execute();
        expect(rows).toEqual([]);
      },
      { timeout: 30_000, interval: 200 },
    );
  const askedStripe = (path: string) => proxy.requests.filter((r) => r.method === 'GET' && r.path === path).length;

  const view = async () => {
    const res = await fetch(`${api.url}/v1/subscriptions/${subscriptionId}`, { headers: { authorization: `Bearer ${token}` } });
    return (await res.json()) as { status: string; failedInvoiceIds: string[]; source: string };
  };
  const until = (check: (v: Awaited<ReturnType<typeof view>>) => void) =>
    vi.waitFor(async () => check(await view()), { timeout: 30_000, interval: 200 });
  const trigger = async (...args: string[]) => {
    const cli = spawnCli(['stripe', 'trigger', ...args, '--subscription', subscriptionId, '--api', api.url], testEnv({ TEMPORAL_TASK_QUEUE: taskQueue }));
    const code = await cli.exited;
    return { code, stdout: cli.stdout(), stderr: cli.stderr() };
  };

  it('creates the subscription to drive', async () => {
    const res = await fetch(`${api.url}/v1/subscriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `trigger-${Date.now()}` },
      body: JSON.stringify({ customer: { email: 'trigger@example.com', name: 'Tri Gger', country: 'NL' }, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }),
    });
    expect(res.status).toBe(202);
    subscriptionId = ((await res.json()) as { subscriptionId: string }).subscriptionId;
    await until((v) => expect(v.status).toBe('active'));
    stripeSubscriptionId = (await api.services.db.selectFrom('subscriptions').select('stripe_subscription_id').where('id', '=', subscriptionId).executeTakeFirstOrThrow()).stripe_subscription_id!;
    expect(stripeSubscriptionId).toMatch(/^sub_/);
  });

  it('drives it past due and back with `stripe trigger`, the payment once Stripe holds it', async () => {
    const failed = await trigger('invoice.payment_failed');
    expect(failed.code, failed.stderr).toBe(0);
    const invoiceId = /invoice (in_[A-Za-z0-9]+)/.exec(failed.stdout)?.[1];
    expect(invoiceId).toBeDefined();
    expect(failed.stdout).toMatch(/^invoice\.payment_failed evt_[A-Za-z0-9]+ invoice in_[A-Za-z0-9]+: HTTP 200/);
    await until((v) => expect(v).toMatchObject({ status: 'past_due', failedInvoiceIds: [invoiceId] }));

    // Stripe does not hold that invoice paid: the event is delivered, Stripe asked, and nothing changes.
    const unbacked = await trigger('invoice.paid', '--invoice', invoiceId!);
    expect(unbacked.code, unbacked.stderr).toBe(0);
    await allDelivered();
    await vi.waitFor(() => expect(askedStripe(`/v1/invoices/${invoiceId}`)).toBeGreaterThan(0), { timeout: 30_000, interval: 200 });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await view()).toMatchObject({ status: 'past_due', failedInvoiceIds: [invoiceId] });

    paidInvoices.add(invoiceId!);
    const paid = await trigger('invoice.paid', '--invoice', invoiceId!);
    expect(paid.code, paid.stderr).toBe(0);
    await until((v) => expect(v).toMatchObject({ status: 'active', failedInvoiceIds: [] }));

    const updated = await trigger('customer.subscription.updated', '--payment-method', 'pm_card_mastercard');
    expect(updated.code, updated.stderr).toBe(0);
    await until((v) => expect(v).toMatchObject({ paymentMethodId: 'pm_card_mastercard' }));
  });

  it('never moves the subscription backwards on an older event that arrives late', async () => {
    const now = Math.floor(Date.now() / 1000);
    const post = async (event: Record<string, unknown>) => {
      const body = JSON.stringify(event);
      const res = await fetch(`${api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body, ensureLocalWebhookSecret(config.dataDir)), body });
      expect(res.status).toBe(200);
    };
    // Stripe sends the payment (newer) before the failure it recovers from (older).
    paidInvoices.add('in_latepaid1');
    await post(invoiceEvent({ type: 'invoice.paid', subscriptionId, invoiceId: 'in_latepaid1', created: now + 20 }));
    await post(invoiceEvent({ type: 'invoice.payment_failed', subscriptionId, invoiceId: 'in_latepaid1', created: now + 10 }));
    // A failure of another invoice that is older than the newest status change: recorded for dunning, status unchanged.
    await post(invoiceEvent({ type: 'invoice.payment_failed', subscriptionId, invoiceId: 'in_olderfail', created: now - 100 }));
    await allDelivered();
    await until((v) => expect(v.failedInvoiceIds).toEqual(['in_olderfail']));
    expect((await view()).status).toBe('active');
  });

  it('ends the subscription on customer.subscription.deleted, once Stripe holds it canceled', async () => {
    const asked = askedStripe(`/v1/subscriptions/${stripeSubscriptionId}`);
    const unbacked = await trigger('customer.subscription.deleted');
    expect(unbacked.code, unbacked.stderr).toBe(0);
    await allDelivered();
    await vi.waitFor(() => expect(askedStripe(`/v1/subscriptions/${stripeSubscriptionId}`)).toBeGreaterThan(asked), { timeout: 30_000, interval: 200 });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await view()).status).toBe('active');

    canceledAtStripe = true;
    const deleted = await trigger('customer.subscription.deleted');
    expect(deleted.code, deleted.stderr).toBe(0);
    await until((v) => expect(v.status).toBe('canceled'));
  });

  it('refuses what it cannot send, saying why', async () => {
    const unknownType = spawnCli(['stripe', 'trigger', 'charge.refunded', '--subscription', subscriptionId], testEnv());
    expect(await unknownType.exited).toBe(1);
    expect(unknownType.stderr()).toMatch(/event type must be one of invoice\.paid/);
    const unknownSub = spawnCli(['stripe', 'trigger', 'invoice.paid', '--subscription', 'sub_ll_aaaaaaaaaaaaaaaaaaaaaaaa', '--api', api.url], testEnv());
    expect(await unknownSub.exited).toBe(1);
    expect(unknownSub.stderr()).toMatch(/no subscription sub_ll_a+ in this database/);
  });
});
