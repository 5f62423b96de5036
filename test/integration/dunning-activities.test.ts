import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDunningActivities, createStripeDunningActivities, loggingNoticeSender, type NoticeSender, type OutgoingNotice } from '../../activities/dunning';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer, markCustomerErased } from '../../src/customers/customer-dal';
import { createDb, type Db } from '../../src/db/database';
import { createLogger } from '../../src/log';
import { createServices, type Services } from '../../src/services';
import { createStripe } from '../../src/stripe/stripe-client';
import { grantEntitlement, upsertSubscription } from '../../src/subscriptions/subscription-dal';
import { startRecordingProxy } from '../support/recording-proxy';
import { quietLog } from '../support/runtime';
import { testConfig, testStack } from '../support/stack';

/**
 * The dunning activities for real: notices through the outbox with the recipient encrypted
 * under the customer's data key (real KMS, PostgreSQL as the application role), the
 * suspensions of entitlements, the policy from configuration, and the payment retry
 * against stripe-mock through a recording proxy.
 */
describe('dunning activities', () => {
  const config = testConfig({
    DUNNING_POLICY: JSON.stringify({ gracePeriodSeconds: 86_400 }),
    DUNNING_POLICY_BY_PRICE: JSON.stringify({ price_premium: { maxAttempts: 6, finalAction: 'mark_unpaid' } }),
  });
  let services: Services;
  let owner: Db;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  const sent: OutgoingNotice[] = [];
  let failSends = 0;
  const sender: NoticeSender = {
    async send(notice) {
      if (failSends > 0) {
        failSends -= 1;
        throw new Error('mail provider unavailable');
      }
      sent.push(notice);
    },
  };
  let local: ReturnType<typeof createDunningActivities>;
  let stripe: ReturnType<typeof createStripeDunningActivities>;

  beforeAll(async () => {
    services = createServices(config, quietLog);
    owner = createDb(testStack().databaseUrl, { max: 2 });
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    local = createDunningActivities({ ...services, config, noticeSender: sender });
    stripe = createStripeDunningActivities({ stripe: createStripe(testConfig({ STRIPE_API_URL: proxy.url })) });
  });
  afterAll(async () => {
    await proxy?.close();
    await owner?.destroy();
    await services?.close();
  });
  beforeEach(() => {
    sent.length = 0;
    proxy.requests.length = 0;
  });

  const newCustomer = async (email: string) => {
    const customerId = `cust_${randomBytes(12).toString('hex')}`;
    await insertCustomer(services.db, await sealProfile(services.envelope, customerId, { email, name: 'Dun Ning', country: 'NL' }));
    return customerId;
  };
  const newSubscription = async (customerId: string) => {
    const subscriptionId = `sub_ll_${randomBytes(12).toString('hex')}`;
    await upsertSubscription(services.db, { subscriptionId, customerId, priceId: 'price_basic', status: 'past_due', sagaStep: 'completed' });
    await grantEntitlement(services.db, { subscriptionId, customerId, priceId: 'price_basic' });
    return subscriptionId;
  };
  const activeEntitlements = async (subscriptionId: string) =>
    (await owner.selectFrom('entitlements').select('id').where('subscription_id', '=', subscriptionId).where('revoked_at', 'is', null).execute()).length;

  it('pins the configured policy: the default with its overrides, and per price', async () => {
    const basic = await local.resolveDunningPolicy({ priceId: 'price_basic' });
    expect(basic).toMatchObject({ name: 'default', gracePeriodSeconds: 86_400, maxAttempts: 4, finalAction: 'cancel' });
    expect(basic.hardDeclineCodes).toEqual(expect.arrayContaining(['lost_card', 'stolen_card', 'pickup_card', 'fraudulent']));
    expect(await local.resolveDunningPolicy({ priceId: 'price_premium' })).toMatchObject({ name: 'price_premium', gracePeriodSeconds: 86_400, maxAttempts: 6, finalAction: 'mark_unpaid' });
  });

  it('writes a notice to the outbox with the recipient encrypted, sends it once, and audits reading the address', async () => {
    const email = `dunning-${randomUUID()}@example.com`;
    const customerId = await newCustomer(email);
    const subscriptionId = await newSubscription(customerId);
    const input = { dunningId: `dunning:${subscriptionId}:in_n1`, subscriptionId, customerId, invoiceId: 'in_n1', attempt: 1, template: 'payment_failed' };

    expect(await local.queueDunningNotice(input)).toEqual({ id: `${input.dunningId}:notice-1`, status: 'sent' });
    const row = await owner.selectFrom('notification_outbox').selectAll().where('id', '=', `${input.dunningId}:notice-1`).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ status: 'sent', template: 'payment_failed', customer_id: customerId, invoice_id: 'in_n1', attempts: 1 });
    expect(row.recipient).toBeInstanceOf(Buffer);
    expect(row.recipient!.toString('latin1')).not.toContain(email);
    expect(sent).toHaveLength(1);
    expect(await sent[0]!.recipient()).toBe(email);
    const decryptions = await owner.selectFrom('audit_log').select(['action', 'purpose', 'subject_id']).where('subject_id', '=', customerId).where('action', '=', 'customer.decrypt').execute();
    expect(decryptions.length).toBe(2);
    expect(decryptions.every((d) => d.purpose === 'dunning notice')).toBe(true);

    // A retried activity finds the notice sent: nothing is sent twice.
    expect(await local.queueDunningNotice(input)).toEqual({ id: `${input.dunningId}:notice-1`, status: 'sent' });
    expect(sent).toHaveLength(1);
  });

  it('keeps a notice pending when the sender fails, and sends it on the retry', async () => {
    const customerId = await newCustomer(`retry-${randomUUID()}@example.com`);
    const subscriptionId = await newSubscription(customerId);
    const input = { dunningId: `dunning:${subscriptionId}:in_n2`, subscriptionId, customerId, invoiceId: 'in_n2', attempt: 2, template: 'payment_retry_failed' };
    failSends = 1;
    await expect(local.queueDunningNotice(input)).rejects.toThrow(/mail provider unavailable/);
    expect(await owner.selectFrom('notification_outbox').select('status').where('id', '=', `${input.dunningId}:notice-2`).executeTakeFirst()).toEqual({ status: 'pending' });
    expect(await local.queueDunningNotice(input)).toMatchObject({ status: 'sent' });
    expect(sent).toHaveLength(1);
  });

  it('skips the notice of an erased customer: no address is left to write to', async () => {
    const customerId = await newCustomer(`erased-${randomUUID()}@example.com`);
    const subscriptionId = await newSubscription(customerId);
    await markCustomerErased(services.db, customerId);
    const result = await local.queueDunningNotice({ dunningId: `dunning:${subscriptionId}:in_n3`, subscriptionId, customerId, invoiceId: 'in_n3', attempt: 1, template: 'payment_failed' });
    expect(result.status).toBe('skipped');
    expect(sent).toEqual([]);
    expect(await owner.selectFrom('notification_outbox').select('recipient').where('id', '=', result.id).executeTakeFirst()).toEqual({ recipient: null });
  });

  it('has a default sender that logs the template and opaque ids only', async () => {
    const lines: string[] = [];
    const email = `logged-${randomUUID()}@example.com`;
    const logged = createDunningActivities({ ...services, config, noticeSender: loggingNoticeSender(createLogger('info', {}, (l) => lines.push(l))) });
    const customerId = await newCustomer(email);
    const subscriptionId = await newSubscription(customerId);
    await logged.queueDunningNotice({ dunningId: `dunning:${subscriptionId}:in_n4`, subscriptionId, customerId, invoiceId: 'in_n4', attempt: 1, template: 'payment_failed' });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'dunning notice', template: 'payment_failed', subscriptionId, invoiceId: 'in_n4', attempt: 1 });
    expect(lines[0]).not.toContain(email);
    expect(lines[0]).not.toContain('Dun Ning');
  });

  it('suspends once for two campaigns and restores when the last one lifts its suspension', async () => {
    const customerId = await newCustomer(`susp-${randomUUID()}@example.com`);
    const subscriptionId = await newSubscription(customerId);
    const grant = { subscriptionId, customerId, priceId: 'price_basic' };
    expect(await local.suspendEntitlements({ subscriptionId, invoiceId: 'in_a' })).toEqual({ revoked: 1, alreadySuspended: false });
    expect(await local.suspendEntitlements({ subscriptionId, invoiceId: 'in_b' })).toEqual({ revoked: 0, alreadySuspended: true });
    // A retried suspension changes nothing.
    expect(await local.suspendEntitlements({ subscriptionId, invoiceId: 'in_a' })).toEqual({ revoked: 0, alreadySuspended: true });
    expect(await activeEntitlements(subscriptionId)).toBe(0);

    expect(await local.restoreEntitlements({ ...grant, invoiceId: 'in_a' })).toEqual({ restored: false });
    expect(await activeEntitlements(subscriptionId)).toBe(0);
    expect(await local.restoreEntitlements({ ...grant, invoiceId: 'in_b' })).toEqual({ restored: true });
    expect(await activeEntitlements(subscriptionId)).toBe(1);
    // A retried restore grants nothing twice.
    expect(await local.restoreEntitlements({ ...grant, invoiceId: 'in_b' })).toEqual({ restored: false });
    expect(await activeEntitlements(subscriptionId)).toBe(1);
  });

  it('never restores the entitlements of a canceled subscription', async () => {
    const customerId = await newCustomer(`canc-${randomUUID()}@example.com`);
    const subscriptionId = await newSubscription(customerId);
    await local.suspendEntitlements({ subscriptionId, invoiceId: 'in_c' });
    await upsertSubscription(services.db, { subscriptionId, customerId, priceId: 'price_basic', status: 'canceled', sagaStep: 'completed' });
    expect(await local.restoreEntitlements({ subscriptionId, customerId, priceId: 'price_basic', invoiceId: 'in_c' })).toEqual({ restored: false });
    expect(await activeEntitlements(subscriptionId)).toBe(0);
  });

  it("reads the decline code of the invoice's last payment, which the webhook does not carry", async () => {
    proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_declined1'), 200, {
      id: 'in_declined1',
      object: 'invoice',
      status: 'open',
      payments: { object: 'list', data: [{ id: 'inpay_1', object: 'invoice_payment', is_default: true, status: 'open', payment: { type: 'payment_intent', payment_intent: 'pi_declined1' } }] },
    });
    proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_declined1'), 200, {
      id: 'pi_declined1',
      object: 'payment_intent',
      status: 'requires_payment_method',
      last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'stolen_card' },
    });
    expect(await stripe.lastDeclineCode({ invoiceId: 'in_declined1' })).toEqual({ declineCode: 'stolen_card' });
    // Stripe includes an invoice's payments only when asked.
    expect(proxy.requests.find((r) => r.method === 'GET' && r.path === '/v1/invoices/in_declined1')?.query.get('expand[0]')).toBe('payments');

    // An invoice without a payment intent: Stripe has nothing to say.
    proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_nopay1'), 200, { id: 'in_nopay1', object: 'invoice', status: 'open', payments: { object: 'list', data: [] } });
    expect(await stripe.lastDeclineCode({ invoiceId: 'in_nopay1' })).toEqual({ declineCode: null });
  });

  it('retries the payment with the attempt key and classifies the answer', async () => {
    const key = `dunning:test-${randomUUID()}:attempt-1`;
    proxy.failNext((method, path) => method === 'POST' && path === '/v1/invoices/in_retry1/pay', 402, {
      error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
    });
    expect(await stripe.retryInvoicePayment({ subscriptionId: 'sub_ll_x', invoiceId: 'in_retry1', idempotencyKey: key })).toEqual({ outcome: 'declined', declineCode: 'insufficient_funds' });
    const pay = proxy.requests.find((r) => r.method === 'POST' && r.path === '/v1/invoices/in_retry1/pay');
    expect(pay?.idempotencyKey).toBe(key);

    // Paid meanwhile (say, by the customer): no second charge attempted.
    proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_paid1'), 200, { id: 'in_paid1', object: 'invoice', status: 'paid' });
    expect(await stripe.retryInvoicePayment({ subscriptionId: 'sub_ll_x', invoiceId: 'in_paid1', idempotencyKey: `${key}-2` })).toEqual({ outcome: 'paid', declineCode: null });
    expect(proxy.requests.filter((r) => r.path === '/v1/invoices/in_paid1/pay')).toEqual([]);

    // stripe-mock answers its fixture, a draft invoice: not paid, and said so.
    expect(await stripe.retryInvoicePayment({ subscriptionId: 'sub_ll_x', invoiceId: 'in_mock1', idempotencyKey: `${key}-3` })).toEqual({ outcome: 'failed', declineCode: 'draft' });
  });
});
