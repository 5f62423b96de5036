import { randomBytes, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createStripeSubscriptionActivities, createSubscriptionActivities } from '../../activities/subscriptions';
import { CiphertextInvalidError } from '../../src/crypto/errors';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer as storeCustomer, setStripeCustomerId } from '../../src/customers/customer-dal';
import { createDb, type Db } from '../../src/db/database';
import { createServices, type Services } from '../../src/services';
import { createStripe } from '../../src/stripe/stripe-client';
import { findSubscription } from '../../src/subscriptions/subscription-dal';
import { metadataCell } from '../../src/subscriptions/subscription-types';
import { quietLog } from '../support/runtime';
import { startRecordingProxy, type RecordedRequest } from '../support/recording-proxy';
import { testConfig, testStack } from '../support/stack';

/**
 * The subscription activities for real: Stripe ones against stripe-mock (which checks
 * every request against Stripe's OpenAPI spec) through a recording proxy, the local ones
 * against PostgreSQL as the application role. Where stripe-mock's fixed answers cannot
 * show a case (an open invoice, a payment awaiting 3-D Secure), the proxy answers that
 * one request itself.
 */

const APP_ROLE = 'ledgerlock_app';

describe('subscription activities against stripe-mock and PostgreSQL', () => {
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let owner: Db;
  let db: Db;
  let local: ReturnType<typeof createSubscriptionActivities>;
  let stripe: ReturnType<typeof createStripeSubscriptionActivities>;
  let customerId: string;
  let services: Services;
  const stripeCustomerId = `cus_${randomBytes(7).toString('hex')}`;

  beforeAll(async () => {
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    owner = createDb(testStack().databaseUrl, { max: 2 });
    db = createDb(testStack().databaseUrl, { role: APP_ROLE, max: 4 });
    local = createSubscriptionActivities({ db });
    services = createServices(testConfig(), quietLog);
    stripe = createStripeSubscriptionActivities({ db, stripe: createStripe(testConfig({ STRIPE_API_URL: proxy.url })), envelope: services.envelope });
    customerId = await insertCustomer(owner, stripeCustomerId);
  });
  afterAll(async () => {
    await services?.close();
    await db?.destroy();
    await owner?.destroy();
    await proxy?.close();
  });
  beforeEach(() => {
    proxy.requests.length = 0;
  });

  const newSubscription = async () => {
    const subscriptionId = `sub_ll_${randomBytes(12).toString('hex')}`;
    await local.recordSubscription({ subscriptionId, customerId, priceId: 'price_monthly', status: 'pending', sagaStep: 'store-customer' });
    return subscriptionId;
  };
  const key = (step: string) => `subscription:test-${randomUUID()}:${step}`;
  const only = (method: string, pathPrefix: string): RecordedRequest[] => proxy.requests.filter((r) => r.method === method && r.path.startsWith(pathPrefix));
  const failureOf = async (promise: Promise<unknown>): Promise<ApplicationFailure> => {
    const err = await promise.then(
      () => expect.fail('expected a failure'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  };

  describe('createStripeSubscription', () => {
    it('creates a default_incomplete subscription expanding the first invoice payments, with our key and metadata, and stores its id', async () => {
      const subscriptionId = await newSubscription();
      const idempotencyKey = key('create-stripe-subscription');
      const result = await stripe.createStripeSubscription({
        subscriptionId,
        customerId,
        priceId: 'price_monthly',
        trialDays: 14,
        metadata: { plan: 'team', [`ledgerlock_subscription_id`]: 'an attempt to override' },
        idempotencyKey,
      });
      const [sent] = only('POST', '/v1/subscriptions');
      expect(proxy.requests).toHaveLength(1);
      expect(sent).toMatchObject({ path: '/v1/subscriptions', idempotencyKey, status: 200 });
      expect(sent!.body.get('customer')).toBe(stripeCustomerId);
      expect(sent!.body.get('items[0][price]')).toBe('price_monthly');
      expect(sent!.body.get('payment_behavior')).toBe('default_incomplete');
      expect(sent!.body.get('expand[0]')).toBe('latest_invoice.payments');
      expect(sent!.body.get('trial_period_days')).toBe('14');
      expect(sent!.body.get('metadata[ledgerlock_subscription_id]')).toBe(subscriptionId);
      expect(sent!.body.get('metadata[plan]')).toBe('team');
      // Our id only: nothing of the customer's travels with the subscription.
      expect([...sent!.body.keys()].filter((k) => k.startsWith('metadata'))).toEqual(['metadata[plan]', 'metadata[ledgerlock_subscription_id]']);

      expect(result.stripeSubscriptionId).toMatch(/^sub_/);
      // stripe-mock's fixture subscription is active: nothing to wait for.
      expect(result).toMatchObject({ stripeStatus: 'active', firstPayment: 'paid' });
      expect((await findSubscription(db, subscriptionId))?.stripe_subscription_id).toBe(result.stripeSubscriptionId);

      // A retry after Stripe answered asks for the subscription instead of creating another.
      proxy.requests.length = 0;
      const retried = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey });
      expect(retried.stripeSubscriptionId).toBe(result.stripeSubscriptionId);
      expect(proxy.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /v1/subscriptions/${result.stripeSubscriptionId}`]);
    });

    it('reports a first payment waiting for 3-D Secure, from the payment intent behind the invoice', async () => {
      const subscriptionId = await newSubscription();
      proxy.failNext((method, path) => method === 'POST' && path === '/v1/subscriptions', 200, incompleteSubscription('sub_3ds', 'pi_3ds'));
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_3ds'), 200, { id: 'pi_3ds', object: 'payment_intent', status: 'requires_action' });
      const result = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create-stripe-subscription') });
      expect(result).toEqual({
        stripeSubscriptionId: 'sub_3ds',
        stripeStatus: 'incomplete',
        latestInvoiceId: 'in_3ds',
        paymentIntentId: 'pi_3ds',
        amountDue: 1500,
        currency: 'eur',
        firstPayment: 'requires_action',
        declineCode: null,
      });
      // Already confirmed (the customer's authentication is what is missing): not confirmed again.
      expect(proxy.requests.filter((r) => r.path.endsWith('/confirm'))).toEqual([]);
    });

    it('confirms a first payment left unconfirmed, with a key derived from the given one', async () => {
      const subscriptionId = await newSubscription();
      proxy.failNext((method, path) => method === 'POST' && path === '/v1/subscriptions', 200, incompleteSubscription('sub_unconfirmed', 'pi_unconfirmed'));
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_unconfirmed'), 200, {
        id: 'pi_unconfirmed',
        object: 'payment_intent',
        status: 'requires_confirmation',
      });
      const idempotencyKey = key('create-stripe-subscription');
      const result = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey });
      const [confirm] = only('POST', '/v1/payment_intents/pi_unconfirmed/confirm');
      expect(confirm).toMatchObject({ idempotencyKey: `${idempotencyKey}:confirm-payment`, status: 200 });
      // stripe-mock answers with its fixture intent, which carries a last payment error: declined.
      expect(result).toMatchObject({ paymentIntentId: 'pi_unconfirmed', firstPayment: 'failed' });
    });

    it('reports a first payment declined on confirmation as failed, with the decline code', async () => {
      const subscriptionId = await newSubscription();
      proxy.failNext((method, path) => method === 'POST' && path === '/v1/subscriptions', 200, incompleteSubscription('sub_declined', 'pi_declined'));
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_declined'), 200, {
        id: 'pi_declined',
        object: 'payment_intent',
        status: 'requires_confirmation',
      });
      proxy.failNext((method, path) => method === 'POST' && path.endsWith('/confirm'), 402, {
        error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
      });
      const result = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create') });
      expect(result).toMatchObject({ stripeSubscriptionId: 'sub_declined', firstPayment: 'failed', declineCode: 'insufficient_funds' });
    });

    it('opens sealed metadata only to send it to Stripe, auditing the decryption', async () => {
      const sealedCustomerId = `cust_${randomBytes(12).toString('hex')}`;
      const customer = await sealProfile(services.envelope, sealedCustomerId, { email: `meta-${randomUUID()}@example.com`, name: 'Meta Data', country: 'AT' });
      await storeCustomer(owner, customer);
      await setStripeCustomerId(owner, sealedCustomerId, stripeCustomerId);
      const subscriptionId = `sub_ll_${randomBytes(12).toString('hex')}`;
      await local.recordSubscription({ subscriptionId, customerId: sealedCustomerId, priceId: 'price_monthly', status: 'pending', sagaStep: 'store-customer' });
      const probe = `contact-${randomUUID()} +4915112345678`;
      const sealed = await services.envelope.encrypt({ id: sealedCustomerId, region: customer.region }, JSON.stringify({ contact: probe }), metadataCell(subscriptionId));
      const idempotencyKey = key('create-stripe-subscription');
      await stripe.createStripeSubscription({ subscriptionId, customerId: sealedCustomerId, priceId: 'price_monthly', sealedMetadata: sealed.toString('base64'), idempotencyKey });
      const [sent] = only('POST', '/v1/subscriptions');
      expect(sent!.body.get('metadata[contact]')).toBe(probe);
      expect(sent!.body.get('metadata[ledgerlock_subscription_id]')).toBe(subscriptionId);
      const audited = await owner.selectFrom('audit_log').selectAll().where('subject_id', '=', sealedCustomerId).where('action', '=', 'customer.decrypt').execute();
      expect(audited).toHaveLength(1);
      expect(audited[0]).toMatchObject({ purpose: 'create the Stripe subscription', details: { fields: 'metadata', subscriptionId } });

      // Sealed for another subscription: it does not open here, and nothing reaches Stripe.
      proxy.requests.length = 0;
      const other = await newSubscription();
      // (the worker's failure mapping makes it a non-retryable CiphertextInvalid failure)
      await expect(
        stripe.createStripeSubscription({ subscriptionId: other, customerId, priceId: 'price_monthly', sealedMetadata: sealed.toString('base64'), idempotencyKey: key('moved') }),
      ).rejects.toBeInstanceOf(CiphertextInvalidError);
      expect(only('POST', '/v1/subscriptions')).toHaveLength(0);
    });

    it("keeps Stripe's own text out of an invalid-request failure: codes and parameter names only", async () => {
      const subscriptionId = await newSubscription();
      const probe = `probe-${randomUUID()}`;
      proxy.failNext((method, path) => method === 'POST' && path.startsWith('/v1/subscriptions'), 400, {
        error: { type: 'invalid_request_error', code: 'parameter_invalid_string', param: `metadata[${probe}]`, message: `Invalid string: ${probe} +4915112345678` },
      });
      const failure = await failureOf(stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('invalid') }));
      expect(failure).toMatchObject({ type: 'StripeInvalidRequest', nonRetryable: true });
      expect(failure.message).toBe('Stripe subscriptions.create: invalid request (parameter_invalid_string, metadata)');
      expect(failure.details).toEqual([{ code: 'parameter_invalid_string', param: 'metadata' }]);
      expect(JSON.stringify({ message: failure.message, details: failure.details })).not.toContain(probe);
    });

    it('refuses for good when the subscription was never recorded', async () => {
      const failure = await failureOf(
        stripe.createStripeSubscription({ subscriptionId: 'sub_ll_neverrecorded000000000', customerId, priceId: 'price_monthly', idempotencyKey: key('x') }),
      );
      expect(failure).toMatchObject({ type: 'SubscriptionNotFound', nonRetryable: true });
      expect(proxy.requests).toHaveLength(0);
    });
  });

  describe('attachPaymentMethod and detachPaymentMethod', () => {
    it('attaches with the given key, then makes it the default with a key derived from it', async () => {
      const idempotencyKey = key('attach-payment-method');
      expect(await stripe.attachPaymentMethod({ customerId, paymentMethodId: 'pm_card_visa', idempotencyKey })).toEqual({ stripeCustomerId });
      expect(proxy.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
        'POST /v1/payment_methods/pm_card_visa/attach 200',
        `POST /v1/customers/${stripeCustomerId} 200`,
      ]);
      const [attach, setDefault] = proxy.requests;
      expect(attach!.idempotencyKey).toBe(idempotencyKey);
      expect(attach!.body.get('customer')).toBe(stripeCustomerId);
      expect(setDefault!.idempotencyKey).toBe(`${idempotencyKey}:set-default`);
      expect(setDefault!.body.get('invoice_settings[default_payment_method]')).toBe('pm_card_visa');
    });

    it('maps a declined card to a non-retryable StripeCardDeclined failure, and sets no default', async () => {
      proxy.failNext((method, path) => method === 'POST' && path.endsWith('/attach'), 402, {
        error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
      });
      const failure = await failureOf(stripe.attachPaymentMethod({ customerId, paymentMethodId: 'pm_card_chargeDeclined', idempotencyKey: key('attach') }));
      expect(failure).toMatchObject({ type: 'StripeCardDeclined', nonRetryable: true });
      expect(failure.details).toEqual([{ code: 'card_declined', declineCode: 'insufficient_funds' }]);
      expect(proxy.requests.map((r) => r.path)).toEqual(['/v1/payment_methods/pm_card_chargeDeclined/attach']);
    });

    it('detaches a payment method of our customer with the given key', async () => {
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_methods/pm_ours'), 200, { id: 'pm_ours', object: 'payment_method', customer: stripeCustomerId });
      const idempotencyKey = key('detach-payment-method');
      expect(await stripe.detachPaymentMethod({ customerId, paymentMethodId: 'pm_ours', idempotencyKey })).toEqual({ detached: true });
      const [detach] = only('POST', '/v1/payment_methods/pm_ours/detach');
      expect(detach).toMatchObject({ idempotencyKey, status: 200 });
    });

    it('leaves alone a payment method that is not our customer’s, and counts a missing one as done', async () => {
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_methods/pm_theirs'), 200, { id: 'pm_theirs', object: 'payment_method', customer: 'cus_someone_else' });
      expect(await stripe.detachPaymentMethod({ customerId, paymentMethodId: 'pm_theirs', idempotencyKey: key('detach') })).toEqual({ detached: false });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_methods/pm_gone'), 404, {
        error: { type: 'invalid_request_error', code: 'resource_missing', message: "No such PaymentMethod: 'pm_gone'" },
      });
      expect(await stripe.detachPaymentMethod({ customerId, paymentMethodId: 'pm_gone', idempotencyKey: key('detach') })).toEqual({ detached: false });
      expect(proxy.requests.filter((r) => r.path.endsWith('/detach'))).toEqual([]);
    });
  });

  describe('cancelStripeSubscription', () => {
    const created = async () => {
      const subscriptionId = await newSubscription();
      const { stripeSubscriptionId } = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create') });
      proxy.requests.length = 0;
      return { subscriptionId, stripeSubscriptionId };
    };

    it('cancels now without a final invoice or proration, with the given key', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      const idempotencyKey = key('cancel-stripe-subscription');
      // stripe-mock's fixture invoice is a draft: nothing to void.
      expect(await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey })).toEqual({ outcome: 'canceled', voidedInvoiceId: null });
      expect(proxy.requests).toHaveLength(1);
      expect(proxy.requests[0]).toMatchObject({ method: 'DELETE', path: `/v1/subscriptions/${stripeSubscriptionId}`, idempotencyKey, status: 200 });
      const { query } = proxy.requests[0]!;
      expect([query.get('invoice_now'), query.get('prorate'), query.get('expand[0]')]).toEqual(['false', 'false', 'latest_invoice']);
    });

    it('voids the open latest invoice after cancelling, with a key derived from the given one', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      proxy.failNext((method) => method === 'DELETE', 200, {
        ...incompleteSubscription(stripeSubscriptionId, 'pi_x'),
        status: 'canceled',
        latest_invoice: { id: 'in_open', object: 'invoice', status: 'open' },
      });
      const idempotencyKey = key('cancel-stripe-subscription');
      expect(await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey })).toEqual({ outcome: 'canceled', voidedInvoiceId: 'in_open' });
      const [voided] = only('POST', '/v1/invoices/in_open/void');
      expect(voided).toMatchObject({ idempotencyKey: `${idempotencyKey}:void-invoice`, status: 200 });
    });

    it('sets cancel_at_period_end with the given key', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      const idempotencyKey = key('cancel-at-period-end');
      expect(await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: true, idempotencyKey })).toEqual({ outcome: 'cancel_at_period_end', voidedInvoiceId: null });
      const [update] = only('POST', `/v1/subscriptions/${stripeSubscriptionId}`);
      expect(update).toMatchObject({ idempotencyKey, status: 200 });
      expect(update!.body.get('cancel_at_period_end')).toBe('true');
    });

    it('counts an already canceled subscription as done', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      proxy.failNext((method) => method === 'DELETE', 400, {
        error: { type: 'invalid_request_error', message: 'This subscription is already canceled.' },
      });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith(`/v1/subscriptions/${stripeSubscriptionId}`), 200, {
        ...incompleteSubscription(stripeSubscriptionId, 'pi_x'),
        status: 'canceled',
      });
      expect(await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey: key('cancel') })).toEqual({
        outcome: 'already_canceled',
        voidedInvoiceId: null,
      });
    });

    it('finds nothing to cancel when Stripe never created the subscription', async () => {
      const subscriptionId = await newSubscription();
      expect(await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey: key('cancel') })).toEqual({ outcome: 'not_found', voidedInvoiceId: null });
      // It looked among the customer's subscriptions for ours (by metadata), and cancelled nothing.
      expect(proxy.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/subscriptions']);
      expect(proxy.requests[0]!.query.get('customer')).toBe(stripeCustomerId);
      expect(proxy.requests[0]!.query.get('status')).toBe('all');
    });
  });

  describe('refundInvoice', () => {
    it('refunds the payment of a paid invoice of the subscription, with the given key', async () => {
      const subscriptionId = await newSubscription();
      const { stripeSubscriptionId } = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create') });
      proxy.requests.length = 0;
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_paid'), 200, paidInvoice('in_paid', stripeSubscriptionId, 'pi_paid'));
      const idempotencyKey = key('refund:req-1');
      const result = await stripe.refundInvoice({ subscriptionId, invoiceId: 'in_paid', amount: 500, idempotencyKey });
      const [refund] = only('POST', '/v1/refunds');
      expect(refund).toMatchObject({ idempotencyKey, status: 200 });
      expect(refund!.body.get('payment_intent')).toBe('pi_paid');
      expect(refund!.body.get('amount')).toBe('500');
      expect(refund!.body.get('metadata[ledgerlock_subscription_id]')).toBe(subscriptionId);
      expect(result.refundId).toMatch(/^re_/);
      expect(result.invoiceId).toBe('in_paid');
      expect(Number.isSafeInteger(result.amount)).toBe(true);
      expect(typeof result.currency).toBe('string');
    });

    it('refuses an invoice of another subscription, and one not paid, for good', async () => {
      const subscriptionId = await newSubscription();
      const { stripeSubscriptionId } = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create') });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_other'), 200, paidInvoice('in_other', 'sub_someone_else', 'pi_other'));
      expect(await failureOf(stripe.refundInvoice({ subscriptionId, invoiceId: 'in_other', idempotencyKey: key('refund') }))).toMatchObject({
        type: 'InvoiceNotOfSubscription',
        nonRetryable: true,
      });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_open'), 200, {
        ...paidInvoice('in_open', stripeSubscriptionId, 'pi_open'),
        status: 'open',
      });
      expect(await failureOf(stripe.refundInvoice({ subscriptionId, invoiceId: 'in_open', idempotencyKey: key('refund') }))).toMatchObject({ type: 'InvoiceNotPaid' });
      expect(only('POST', '/v1/refunds')).toEqual([]);
    });
  });

  describe('confirmInvoicePayment and confirmSubscriptionCanceled: Stripe’s word on what a signal claimed', () => {
    const created = async () => {
      const subscriptionId = await newSubscription();
      const { stripeSubscriptionId } = await stripe.createStripeSubscription({ subscriptionId, customerId, priceId: 'price_monthly', idempotencyKey: key('create') });
      proxy.requests.length = 0;
      return { subscriptionId, stripeSubscriptionId };
    };

    it('confirms a paid invoice of the subscription with Stripe’s amount, currency and time, reading only', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_confirmed'), 200, {
        ...paidInvoice('in_confirmed', stripeSubscriptionId, 'pi_confirmed'),
        amount_paid: 2300,
        currency: 'EUR',
        status_transitions: { paid_at: 1_700_000_000 },
      });
      expect(await stripe.confirmInvoicePayment({ subscriptionId, invoiceId: 'in_confirmed', claimed: 'paid' })).toEqual({
        invoiceId: 'in_confirmed',
        status: 'paid',
        amountPaid: 2300,
        currency: 'eur',
        paidAt: 1_700_000_000,
        declineCode: null,
      });
      expect(proxy.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/invoices/in_confirmed']);
      expect(proxy.requests[0]!.query.get('expand[0]')).toBe('payments');
    });

    it('backs no claim about an invoice of another subscription, or one Stripe does not hold paid (stripe-mock’s own draft)', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_theirs'), 200, paidInvoice('in_theirs', 'sub_someone_else', 'pi_theirs'));
      expect(await stripe.confirmInvoicePayment({ subscriptionId, invoiceId: 'in_theirs', claimed: 'paid' })).toMatchObject({ status: 'not_ours', amountPaid: null });
      // stripe-mock's fixture: a draft of some other subscription.
      expect((await stripe.confirmInvoicePayment({ subscriptionId, invoiceId: 'in_fixture', claimed: 'paid' })).status).toBe('not_ours');
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_waiting'), 200, { ...paidInvoice('in_waiting', stripeSubscriptionId, 'pi_waiting'), status: 'open', amount_paid: 0 });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_waiting'), 200, { id: 'pi_waiting', object: 'payment_intent', status: 'requires_action', last_payment_error: null });
      expect((await stripe.confirmInvoicePayment({ subscriptionId, invoiceId: 'in_waiting', claimed: 'paid' })).status).toBe('pending');
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/invoices/in_declined'), 200, { ...paidInvoice('in_declined', stripeSubscriptionId, 'pi_declined'), status: 'open', amount_paid: 0 });
      proxy.failNext((method, path) => method === 'GET' && path.startsWith('/v1/payment_intents/pi_declined'), 200, {
        id: 'pi_declined',
        object: 'payment_intent',
        status: 'requires_payment_method',
        last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds' },
      });
      expect(await stripe.confirmInvoicePayment({ subscriptionId, invoiceId: 'in_declined', claimed: 'failed' })).toMatchObject({ status: 'failed', declineCode: 'insufficient_funds' });
      expect(only('POST', '/')).toEqual([]);
      // A subscription Stripe never created has no invoices to confirm, and Stripe is not even asked.
      proxy.requests.length = 0;
      expect((await stripe.confirmInvoicePayment({ subscriptionId: await newSubscription(), invoiceId: 'in_confirmed', claimed: 'paid' })).status).toBe('not_ours');
      expect(proxy.requests).toEqual([]);
    });

    it('confirms a cancellation only when Stripe holds the subscription canceled', async () => {
      const { subscriptionId, stripeSubscriptionId } = await created();
      // stripe-mock's fixture subscription is active.
      expect(await stripe.confirmSubscriptionCanceled({ subscriptionId })).toEqual({ canceled: false });
      expect(proxy.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /v1/subscriptions/${stripeSubscriptionId}`]);
      proxy.failNext((method, path) => method === 'GET' && path.startsWith(`/v1/subscriptions/${stripeSubscriptionId}`), 200, {
        ...incompleteSubscription(stripeSubscriptionId, 'pi_x'),
        status: 'canceled',
      });
      expect(await stripe.confirmSubscriptionCanceled({ subscriptionId })).toEqual({ canceled: true });
    });
  });

  describe('local activities', () => {
    it('provision entitlements once, revoke them idempotently, and grant anew after a revocation', async () => {
      const subscriptionId = await newSubscription();
      const grant = { subscriptionId, customerId, priceId: 'price_monthly' };
      expect(await local.provisionEntitlements(grant)).toEqual({ granted: true });
      expect(await local.provisionEntitlements(grant)).toEqual({ granted: false });
      const active = () => owner.selectFrom('entitlements').selectAll().where('subscription_id', '=', subscriptionId).where('revoked_at', 'is', null).execute();
      expect(await active()).toHaveLength(1);
      expect(await local.revokeEntitlements({ subscriptionId })).toEqual({ revoked: 1 });
      expect(await local.revokeEntitlements({ subscriptionId })).toEqual({ revoked: 0 });
      expect(await active()).toHaveLength(0);
      expect(await local.provisionEntitlements(grant)).toEqual({ granted: true });
      expect(await owner.selectFrom('entitlements').selectAll().where('subscription_id', '=', subscriptionId).execute()).toHaveLength(2);
    });

    it('marks a pending subscription active (again on a retry), and records a failure that nothing later overwrites', async () => {
      const subscriptionId = await newSubscription();
      await local.markSubscriptionActive({ subscriptionId });
      await local.markSubscriptionActive({ subscriptionId });
      expect(await findSubscription(db, subscriptionId)).toMatchObject({ status: 'active', saga_step: 'completed', failure_type: null });

      const failed = await newSubscription();
      const record = { subscriptionId: failed, customerId, priceId: 'price_monthly', sagaStep: 'attach-payment-method' } as const;
      await local.recordSubscription({ ...record, status: 'failed', failure: { type: 'StripeCardDeclined', reason: 'card declined (insufficient_funds)' } });
      await local.recordSubscription({ ...record, status: 'active', sagaStep: 'completed' });
      expect(await findSubscription(db, failed)).toMatchObject({
        status: 'failed',
        saga_step: 'attach-payment-method',
        failure_type: 'StripeCardDeclined',
        failure_reason: 'card declined (insufficient_funds)',
      });
      expect(await failureOf(local.markSubscriptionActive({ subscriptionId: failed }))).toMatchObject({ type: 'SubscriptionNotPending', nonRetryable: true });
    });
  });
});

/** A customer row with fake ciphertext (the activities only need its Stripe id). */
async function insertCustomer(owner: Db, stripeCustomerId: string): Promise<string> {
  const customerId = `cust_${randomBytes(12).toString('hex')}`;
  const dataKeyId = randomUUID();
  await owner
    .insertInto('data_keys')
    .values({ id: dataKeyId, customer_id: customerId, region: 'eu', kms_key_id: 'arn:aws:kms:eu-west-1:000000000000:key/test', wrapped_key: Buffer.from('fake'), status: 'active' })
    .execute();
  await owner
    .insertInto('customers')
    .values({ id: customerId, region: 'eu', country: 'DE', data_key_id: dataKeyId, email: Buffer.from('fake'), name: Buffer.from('fake'), stripe_customer_id: stripeCustomerId })
    .execute();
  return customerId;
}

function incompleteSubscription(id: string, paymentIntentId: string) {
  return {
    id,
    object: 'subscription',
    status: 'incomplete',
    metadata: {},
    latest_invoice: {
      id: 'in_3ds',
      object: 'invoice',
      status: 'open',
      amount_due: 1500,
      currency: 'eur',
      payments: {
        object: 'list',
        data: [{ id: 'inpay_3ds', object: 'invoice_payment', is_default: true, status: 'open', payment: { type: 'payment_intent', payment_intent: paymentIntentId } }],
        has_more: false,
      },
    },
  };
}

function paidInvoice(id: string, stripeSubscriptionId: string, paymentIntentId: string) {
  return {
    id,
    object: 'invoice',
    status: 'paid',
    amount_paid: 1500,
    currency: 'eur',
    parent: { type: 'subscription_details', subscription_details: { subscription: stripeSubscriptionId, metadata: {} } },
    payments: {
      object: 'list',
      data: [{ id: 'inpay_1', object: 'invoice_payment', is_default: true, status: 'paid', payment: { type: 'payment_intent', payment_intent: paymentIntentId } }],
      has_more: false,
    },
  };
}
