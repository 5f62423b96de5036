import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDb, type Db } from '../../src/db/database';
import { connectClient } from '../../src/temporal/connection';
import { subscriptionWorkflowId } from '../../workflows/subscription-contracts';
import { databaseText, decodedHistoryText } from '../support/leak-probe';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { startRecordingProxy, type RecordedRequest } from '../support/recording-proxy';
import { startTestApi } from '../support/runtime';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { invoiceEvent, signedHeaders, TEST_WEBHOOK_SECRET } from '../support/stripe-events';
import { testConfig, testEnv, testStack } from '../support/stack';
import { tokenFor } from '../support/tokens';

/**
 * The subscription API against the real saga: workers run as `ledgerlock worker`
 * processes, Stripe is stripe-mock behind a recording proxy that counts every request
 * and its idempotency key.
 */
describe('subscriptions through the API', () => {
  const taskQueue = `subscriptions-${process.pid}`;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let api: RunningServer & { services: Services };
  let db: Db;
  let worker: SpawnedCli;
  let token: string;
  let workerEnv: Record<string, string>;

  const startWorker = async () => {
    const started = spawnCli(['worker'], workerEnv);
    await started.waitFor('worker polling', 60_000);
    return started;
  };

  beforeAll(async () => {
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    const overrides = { STRIPE_API_URL: proxy.url, TEMPORAL_TASK_QUEUE: taskQueue, STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET };
    workerEnv = testEnv({ ...overrides, LOG_LEVEL: 'info' });
    const config = testConfig(overrides);
    [api, worker] = await Promise.all([startTestApi(config), startWorker()]);
    db = createDb(config.databaseUrl!, { max: 2 });
    token = await tokenFor(config, 'svc-billing', ['subscriptions:write', 'subscriptions:read', 'refunds:write']);
  });
  afterAll(async () => {
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await api?.stop();
    await db?.destroy();
    await proxy?.close();
  });

  const headers = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json', ...extra });
  const create = (key: string, overrides: Record<string, unknown> = {}) =>
    fetch(`${api.url}/v1/subscriptions`, {
      method: 'POST',
      headers: headers({ 'idempotency-key': key }),
      body: JSON.stringify({
        customer: { email: `sub-${key}@example.com`, name: 'Sub Scriber', country: 'NL' },
        priceId: 'price_basic',
        paymentMethodId: 'pm_card_visa',
        metadata: { plan: 'basic' },
        ...overrides,
      }),
    });
  const state = async (id: string) => {
    const res = await fetch(`${api.url}/v1/subscriptions/${id}`, { headers: headers() });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const until = (id: string, status: string, source?: 'workflow' | 'database') =>
    vi.waitFor(
      async () => {
        const s = await state(id);
        expect(s.body.status).toBe(status);
        if (source) expect(s.body.source).toBe(source);
        return s.body;
      },
      { timeout: 45_000, interval: 200 },
    );
  const requestsOf = (subscriptionId: string): RecordedRequest[] =>
    proxy.requests.filter((r) => r.idempotencyKey?.startsWith(`subscription:${subscriptionId}:`));

  let activeId: string;

  it('creates a subscription through the saga to active, one Stripe request per idempotency key', async () => {
    const res = await create('sub-happy');
    expect(res.status).toBe(202);
    const body = (await res.json()) as { subscriptionId: string; workflowId: string; status: string };
    expect(body).toMatchObject({ status: 'pending', workflowId: `subscription:${body.subscriptionId}` });
    expect(res.headers.get('location')).toBe(`/v1/subscriptions/${body.subscriptionId}`);
    activeId = body.subscriptionId;

    const active = await until(activeId, 'active');
    expect(active).toMatchObject({ source: 'workflow', sagaStep: 'completed' });
    expect(active.stripeSubscriptionId).toMatch(/^sub_/);

    const keys = requestsOf(activeId).map((r) => r.idempotencyKey);
    expect(keys.length).toBeGreaterThanOrEqual(3);
    expect(new Set(keys).size).toBe(keys.length);
    const sent = requestsOf(activeId).find((r) => r.method === 'POST' && r.path === '/v1/subscriptions')!;
    expect(sent.body.get('payment_behavior')).toBe('default_incomplete');
    expect(sent.body.get('metadata[ledgerlock_subscription_id]')).toBe(activeId);
    expect(sent.body.get('items[0][price]')).toBe('price_basic');

    const entitlements = await db.selectFrom('entitlements').selectAll().where('subscription_id', '=', activeId).execute();
    expect(entitlements).toHaveLength(1);
  });

  it('answers the same Idempotency-Key with the same subscription and starts no second saga', async () => {
    const before = requestsOf(activeId).length;
    const again = await create('sub-happy');
    expect(again.status).toBe(202);
    expect(((await again.json()) as { subscriptionId: string }).subscriptionId).toBe(activeId);
    const conflict = await create('sub-happy', { priceId: 'price_premium' });
    expect(conflict.status).toBe(409);
    expect(requestsOf(activeId).length).toBe(before);
  });

  it('rejects bad input with a problem naming each field, card data included, and a missing Idempotency-Key', async () => {
    const bad = await create('sub-bad', { paymentMethodId: '4242424242424242', priceId: 'basic', card: { number: '4242424242424242' } });
    expect(bad.status).toBe(400);
    const fields = ((await bad.json()) as { errors: { field: string }[] }).errors.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['body.paymentMethodId', 'body.priceId', 'body']));
    const noKey = await fetch(`${api.url}/v1/subscriptions`, { method: 'POST', headers: headers(), body: '{}' });
    expect(noKey.status).toBe(400);
    expect(JSON.stringify(await noKey.json())).toContain('header.Idempotency-Key');
  });

  it('undoes everything for an unknown price, and GET answers failed with the reason from PostgreSQL', async () => {
    proxy.failNext((method, path) => method === 'POST' && path.startsWith('/v1/subscriptions'), 400, {
      error: { type: 'invalid_request_error', code: 'resource_missing', param: 'items[0][price]', message: "No such price: 'price_gone'" },
    });
    const res = await create('sub-unknown-price', { priceId: 'price_gone' });
    const { subscriptionId } = (await res.json()) as { subscriptionId: string };
    // Once the workflow has ended, PostgreSQL answers.
    const failed = await until(subscriptionId, 'failed', 'database');
    expect(failed.failure).toMatchObject({ type: 'StripeInvalidRequest' });
    const sent = requestsOf(subscriptionId).map((r) => `${r.method} ${r.path.replace(/\/(cus|sub)_[A-Za-z0-9]+/g, '/$1_…')}`);
    // Undone last-first: the Stripe customer deleted (at Stripe that detaches its payment
    // methods too). stripe-mock's fixture says the payment method belongs to another
    // customer, so the detach compensation rightly leaves it alone.
    expect(sent).toEqual([
      'POST /v1/customers',
      'POST /v1/payment_methods/pm_card_visa/attach',
      'POST /v1/customers/cus_…',
      'POST /v1/subscriptions',
      'DELETE /v1/customers/cus_…',
    ]);
    const customer = await db.selectFrom('customers').select('status').where('id', '=', failed.customerId as string).executeTakeFirst();
    expect(customer?.status).toBe('erased');
  });

  it('leaves no trace of free-text metadata or of Stripe\'s error text once a failed saga has erased its customer', async () => {
    const marker = `probe-${randomUUID()}`;
    const phone = '+4915112345678';
    proxy.failNext((method, path) => method === 'POST' && path.startsWith('/v1/subscriptions'), 400, {
      error: { type: 'invalid_request_error', code: 'parameter_invalid_string', param: 'metadata[contact]', message: `Invalid metadata value: '${marker} ${phone}'` },
    });
    const res = await create('sub-metadata-probe', { metadata: { contact: `${marker} ${phone}` } });
    expect(res.status).toBe(202);
    const { subscriptionId } = (await res.json()) as { subscriptionId: string };
    const failed = await until(subscriptionId, 'failed', 'database');
    expect(failed.failure).toMatchObject({ type: 'StripeInvalidRequest' });
    // Stripe did get the metadata: it was opened for that call only.
    const sent = requestsOf(subscriptionId).find((r) => r.method === 'POST' && r.path === '/v1/subscriptions')!;
    expect(sent.body.get('metadata[contact]')).toBe(`${marker} ${phone}`);
    const customerId = failed.customerId as string;
    expect((await db.selectFrom('customers').select('status').where('id', '=', customerId).executeTakeFirstOrThrow()).status).toBe('erased');

    const client = await connectClient(testConfig({ TEMPORAL_TASK_QUEUE: taskQueue }), api.services.dataConverter);
    try {
      const codec = api.services.dataConverter.payloadCodecs![0]!;
      const workflowIds = new Set([subscriptionWorkflowId(subscriptionId)]);
      for await (const execution of client.workflow.list({ query: `CustomerId = '${customerId}'` })) workflowIds.add(execution.workflowId);
      for (const workflowId of workflowIds) {
        const text = await decodedHistoryText(client, workflowId, codec);
        expect(text.length).toBeGreaterThan(0);
        expect(text).not.toContain(marker);
        expect(text).not.toContain(phone);
      }
    } finally {
      await client.connection.close();
    }
    const tables = await databaseText(db);
    for (const value of [marker, phone]) {
      expect(tables).not.toContain(value);
      expect(tables).not.toContain(Buffer.from(value).toString('hex'));
    }
    expect(worker.stdout()).not.toContain(marker);
  });

  it('finishes a saga whose worker was SIGKILLed mid-call, with exactly one Stripe request per idempotency key', async () => {
    // Stripe is slow to answer the subscription create: the worker is killed while it waits.
    proxy.holdNext((method, path) => method === 'POST' && path === '/v1/subscriptions', 15_000);
    const res = await create(`sub-crash-${randomUUID()}`);
    const { subscriptionId } = (await res.json()) as { subscriptionId: string };
    await vi.waitFor(() => expect(proxy.held.some((r) => r.idempotencyKey?.startsWith(`subscription:${subscriptionId}:`))).toBe(true), {
      timeout: 30_000,
      interval: 100,
    });
    worker.child.kill('SIGKILL');
    await worker.exited;
    worker = await startWorker();

    await until(subscriptionId, 'active');
    await vi.waitFor(() => expect(proxy.abandoned.some((r) => r.idempotencyKey?.startsWith(`subscription:${subscriptionId}:`))).toBe(true), {
      timeout: 20_000,
    });
    const keys = requestsOf(subscriptionId).map((r) => r.idempotencyKey);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toContain(`subscription:${subscriptionId}:create-stripe-subscription`);
  });

  it('refuses refunds it cannot make with a problem, before anything reaches Stripe', async () => {
    const refund = (body: unknown, extra: Record<string, string> = { 'idempotency-key': `refund-${randomUUID()}` }) =>
      fetch(`${api.url}/v1/subscriptions/${activeId}/refunds`, { method: 'POST', headers: headers(extra), body: JSON.stringify(body) });
    const before = proxy.requests.length;
    const unknownInvoice = await refund({ invoiceId: 'in_notours', amount: 100 });
    expect(unknownInvoice.status).toBe(422);
    expect(((await unknownInvoice.json()) as { type: string }).type).toBe('urn:ledgerlock:InvoiceNotRefundable');
    expect((await refund({ invoiceId: 'in_x', amount: -5 })).status).toBe(400);
    expect((await refund({ invoiceId: 'in_x' }, {})).status).toBe(400);
    const noScope = await fetch(`${api.url}/v1/subscriptions/${activeId}/refunds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await tokenFor(testConfig(), 'svc-readonly', ['subscriptions:read'])}`, 'content-type': 'application/json', 'idempotency-key': 'r' },
      body: JSON.stringify({ invoiceId: 'in_x' }),
    });
    expect(noScope.status).toBe(403);
    expect(proxy.requests.length).toBe(before);
  });

  it('binds a refund Idempotency-Key to its body for good: the same body gets the same refund however many follow, another body 409', async () => {
    // A renewal paid through the webhook gives the subscription an invoice to refund from.
    const invoiceId = `in_refund${randomUUID().replace(/-/g, '')}`;
    const { stripeSubscriptionId } = (await state(activeId)).body as { stripeSubscriptionId: string };
    const paid = {
      id: invoiceId,
      object: 'invoice',
      status: 'paid',
      amount_paid: 10_000,
      currency: 'eur',
      parent: { type: 'subscription_details', subscription_details: { subscription: stripeSubscriptionId, metadata: {} } },
      payments: { object: 'list', data: [{ id: 'inpay_1', object: 'invoice_payment', is_default: true, status: 'paid', payment: { type: 'payment_intent', payment_intent: 'pi_refund' } }], has_more: false },
    };
    // What Stripe holds, answered before the webhook arrives: the workflow confirms the renewal with Stripe as soon as it is signalled.
    proxy.failNext((method, path) => method === 'GET' && path.startsWith(`/v1/invoices/${invoiceId}`), 200, paid, 1000);
    const event = JSON.stringify(invoiceEvent({ type: 'invoice.paid', subscriptionId: activeId, invoiceId, amount: 10_000 }));
    expect((await fetch(`${api.url}/v1/webhooks/stripe`, { method: 'POST', headers: signedHeaders(event), body: event })).status).toBe(200);
    const refund = (key: string, body: Record<string, unknown>) =>
      fetch(`${api.url}/v1/subscriptions/${activeId}/refunds`, { method: 'POST', headers: headers({ 'idempotency-key': key }), body: JSON.stringify(body) });
    const refundsAtStripe = () => proxy.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds').length;

    const key = `refund-${randomUUID()}`;
    // Until the relay has delivered the renewal, the invoice is not refundable yet (422); retrying the same request is fine.
    const first = await vi.waitFor(
      async () => {
        const res = await refund(key, { invoiceId, amount: 100 });
        expect(res.status).toBe(201);
        return (await res.json()) as { refundId: string; invoiceId: string; amount: number };
      },
      { timeout: 30_000, interval: 300 },
    );
    expect(first).toMatchObject({ invoiceId, refundId: expect.stringMatching(/^re_/) });
    const atStripe = refundsAtStripe();

    const again = await refund(key, { invoiceId, amount: 100 });
    expect(again.status).toBe(201);
    expect(await again.json()).toEqual(first);
    for (const other of [{ invoiceId, amount: 200 }, { invoiceId }, { invoiceId: 'in_another', amount: 100 }]) {
      const conflict = await refund(key, other);
      expect(conflict.status).toBe(409);
      expect(conflict.headers.get('content-type')).toContain('application/problem+json');
    }
    // The same key on another subscription is another request too.
    const elsewhere = await fetch(`${api.url}/v1/subscriptions/sub_ll_${'0'.repeat(32)}/refunds`, {
      method: 'POST',
      headers: headers({ 'idempotency-key': key }),
      body: JSON.stringify({ invoiceId, amount: 100 }),
    });
    expect(elsewhere.status).toBe(409);
    expect(refundsAtStripe()).toBe(atStripe);

    // More refunds than the workflow keeps records of (50), each under its own key.
    for (let i = 0; i < 55; i += 1) expect((await refund(`refund-${randomUUID()}`, { invoiceId, amount: 1 })).status).toBe(201);
    const later = refundsAtStripe();
    expect(later).toBe(atStripe + 55);
    const late = await refund(key, { invoiceId, amount: 100 });
    expect(late.status).toBe(201);
    expect(await late.json()).toEqual(first);
    expect((await refund(key, { invoiceId, amount: 1 })).status).toBe(409);
    expect(refundsAtStripe()).toBe(later);
  }, 120_000);

  it('cancels immediately through the update, then answers from PostgreSQL once the workflow ended', async () => {
    const res = await fetch(`${api.url}/v1/subscriptions/${activeId}/cancel`, { method: 'POST', headers: headers(), body: JSON.stringify({ atPeriodEnd: false }) });
    expect(res.status).toBe(200);
    const canceled = await until(activeId, 'canceled', 'database');
    expect(canceled.cancelAtPeriodEnd).toBe(false);
    const again = await fetch(`${api.url}/v1/subscriptions/${activeId}/cancel`, { method: 'POST', headers: headers(), body: JSON.stringify({ atPeriodEnd: false }) });
    expect([404, 409]).toContain(again.status);
    const badBody = await fetch(`${api.url}/v1/subscriptions/${activeId}/cancel`, { method: 'POST', headers: headers(), body: JSON.stringify({ atPeriodEnd: 'now' }) });
    expect(badBody.status).toBe(400);
  });
});
