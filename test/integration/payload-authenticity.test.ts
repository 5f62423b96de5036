import { randomUUID } from 'node:crypto';
import { Client, WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { bundleWorkflowCode, type NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { KmsPayloadCodec, refusedPayloadCount } from '../../src/temporal/payload-codec';
import { WORKFLOW_BUNDLE_OPTIONS } from '../../src/worker/worker';
import { dunningInvoicePaidSignal, dunningStateQuery, dunningWorkflowId, type DunningView } from '../../workflows/dunning-contracts';
import { PAYLOAD_REFUSED } from '../../workflows/payload-refusal';
import {
  paymentFailedSignal,
  paymentOutcomeSignal,
  refundInvoiceUpdate,
  renewalPaidSignal,
  subscriptionCanceledSignal,
  subscriptionWorkflowId,
  type CreateSubscriptionInput,
  type SubscriptionView,
} from '../../workflows/subscription-contracts';
import { createSubscriptionWorkflow } from '../../workflows/subscriptions';
import { quietLog, silentLogger } from '../support/runtime';
import { testConfig } from '../support/stack';
import {
  createSubscriptionFakes,
  FAST_DUNNING_POLICY,
  FIRST_INVOICE,
  runFakeWorkers,
  subscriptionInput,
  waitForIdle,
  waitForView,
  type Scenario,
  type SubscriptionFakes,
} from '../support/subscription-fakes';

/**
 * Payload authenticity, on the dev server with the production workflow bundle and data
 * converter (activity fakes stand in for Stripe and PostgreSQL): what did not come through
 * our codec is refused, and what did (even minted by whoever holds the codec key) moves no
 * money unless Stripe says the same.
 */
describe('payload authenticity', () => {
  const config = testConfig({ TEMPORAL_TASK_QUEUE: `authenticity-${randomUUID()}` });
  // Campaigns of this price wait for years: they stay out of the way of what is tested here.
  const PRICE = 'price_authenticity';
  let services: Services;
  let client: Client;
  /** Someone who reaches the Temporal frontend but has no codec key: everything it sends is plaintext. */
  let plain: Client;
  let connection: NativeConnection;
  let fakes: SubscriptionFakes;
  let workers: { stop(): Promise<void> } | undefined;
  const codec = () => services.dataConverter.payloadCodecs![0] as KmsPayloadCodec;

  beforeAll(async () => {
    services = createServices(config, quietLog);
    client = await connectClient(config, services.dataConverter);
    // It sends plaintext; what comes back is read through our codec only so that the test can look at the answer.
    const ours = services.dataConverter.payloadCodecs![0]!;
    plain = new Client({
      connection: client.connection,
      namespace: config.temporal.namespace,
      dataConverter: { payloadCodecs: [{ encode: async (payloads) => payloads, decode: (payloads, context) => ours.decode(payloads, context) }] },
    });
    connection = await connectWorker(config);
    fakes = createSubscriptionFakes();
    fakes.setDunningPolicy(PRICE, { ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [20 * 365 * 86_400], gracePeriodSeconds: 20 * 365 * 86_400 });
    workers = await runFakeWorkers({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      fakes,
      workflowBundle: await bundleWorkflowCode({ ...WORKFLOW_BUNDLE_OPTIONS, logger: silentLogger }),
      dataConverter: services.dataConverter,
    });
  });
  afterAll(async () => {
    await workers?.stop();
    await connection?.close();
    await client?.connection.close();
    await services?.close();
  });

  async function start(scenario: Scenario, overrides: Partial<CreateSubscriptionInput> = {}) {
    const input = subscriptionInput({ priceId: PRICE, ...overrides });
    const workflowId = subscriptionWorkflowId(input.subscriptionId);
    fakes.scenario(workflowId, scenario);
    const handle = await client.workflow.start(createSubscriptionWorkflow, { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
    return { input, workflowId, handle };
  }

  const settle = () => new Promise((resolve) => setTimeout(resolve, 1_500));
  const view = (workflowId: string) => client.workflow.getHandle(workflowId).query<SubscriptionView>('subscriptionState');

  describe('a payload our codec did not encrypt', () => {
    it('as a workflow input: the workflow fails at once with a non-retryable PayloadRefused naming no content, and no activity runs', async () => {
      const input = subscriptionInput({ priceId: PRICE });
      const workflowId = subscriptionWorkflowId(input.subscriptionId);
      const refusedBefore = codec().refusedCount;
      const countBefore = refusedPayloadCount();
      await plain.workflow.start(createSubscriptionWorkflow, { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });

      const err = await client.workflow
        .getHandle(workflowId)
        .result()
        .then(
          () => expect.fail('a plaintext start must be refused'),
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const cause = (err as WorkflowFailedError).cause;
      expect(cause).toBeInstanceOf(ApplicationFailure);
      expect(cause).toMatchObject({ type: PAYLOAD_REFUSED, nonRetryable: true });
      for (const secret of [input.subscriptionId, input.customer.customerId, input.paymentMethodId, PRICE]) expect(cause!.message).not.toContain(secret);

      expect(fakes.callsOf(workflowId)).toEqual([]);
      const history = await client.workflow.getHandle(workflowId).fetchHistory();
      expect(history.events!.some((e) => e.activityTaskScheduledEventAttributes)).toBe(false);
      expect(codec().refusedCount).toBeGreaterThan(refusedBefore);
      expect(refusedPayloadCount()).toBeGreaterThan(countBefore);
    });

    it('as a signal (or a signal with no payload at all): dropped, the workflow waits on, no activity runs; the same signal encrypted is acted on', async () => {
      const { workflowId, handle } = await start({ firstPayment: 'requires_action' });
      await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
      await waitForIdle(client, workflowId);
      const callsBefore = fakes.callsOf(workflowId).length;
      const refusedBefore = codec().refusedCount;

      const paid = { outcome: 'paid' as const, invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_000, eventId: 'evt_plain', amountPaid: 1500, currency: 'eur' };
      await plain.workflow.getHandle(workflowId).signal(paymentOutcomeSignal, paid);
      await plain.workflow.getHandle(workflowId).signal('paymentOutcome');
      await settle();
      expect(await view(workflowId)).toMatchObject({ status: 'pending', sagaStep: 'await-first-payment' });
      expect(fakes.callsOf(workflowId)).toHaveLength(callsBefore);
      expect(codec().refusedCount).toBeGreaterThan(refusedBefore);

      await handle.signal(paymentOutcomeSignal, { ...paid, eventId: 'evt_genuine' });
      await waitForView(client, workflowId, (v) => v.status === 'active');
      await handle.terminate('test done');
    });

    it('as an update: rejected with PayloadRefused before it is accepted, no refund is made; the same update encrypted is', async () => {
      const { workflowId, handle } = await start({ firstPayment: 'paid' });
      await waitForView(client, workflowId, (v) => v.status === 'active');
      const request = { invoiceId: FIRST_INVOICE.invoiceId, amount: 500, requestId: 'refund-forged', requestedBy: 'svc-forger' };

      const err = await plain.workflow
        .getHandle(workflowId)
        .executeUpdate(refundInvoiceUpdate, { args: [request] })
        .then(
          () => expect.fail('a plaintext update must be refused'),
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((err as WorkflowUpdateFailedError).cause).toMatchObject({ type: PAYLOAD_REFUSED, nonRetryable: true });
      expect(fakes.inputsOf(workflowId, 'refundInvoice')).toEqual([]);
      // Rejected before acceptance: the history holds no trace of it.
      const history = await handle.fetchHistory();
      expect(history.events!.some((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toBe(false);

      // A query with a plaintext argument is not answered either.
      await expect(plain.workflow.getHandle(workflowId).query('subscriptionState', { probe: 1 })).rejects.toThrow();

      const refund = await handle.executeUpdate(refundInvoiceUpdate, { args: [{ ...request, requestId: 'refund-genuine' }] });
      expect(refund).toMatchObject({ invoiceId: FIRST_INVOICE.invoiceId, amount: 500 });
      expect(fakes.inputsOf(workflowId, 'refundInvoice')).toHaveLength(1);
      await handle.terminate('test done');
    });
  });

  describe('a money fact in valid ciphertext, minted with the codec key, that Stripe does not back', () => {
    it('a forged "paid" first payment activates nothing; the saga keeps waiting and activates when Stripe holds the invoice paid', async () => {
      const { workflowId, handle } = await start({ firstPayment: 'requires_action' });
      await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
      fakes.stripeSaysInvoice(FIRST_INVOICE.invoiceId, 'pending');
      try {
        await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_000, eventId: 'evt_forged', amountPaid: 1500, currency: 'eur' });
        await expect.poll(() => fakes.inputsOf(workflowId, 'confirmInvoicePayment').length).toBe(1);
        await settle();
        expect(await view(workflowId)).toMatchObject({ status: 'pending', sagaStep: 'await-first-payment' });
        expect(fakes.inputsOf(workflowId, 'provisionEntitlements')).toEqual([]);
        expect(fakes.inputsOf(workflowId, 'markSubscriptionActive')).toEqual([]);
        // A forged failure does not undo the customer's subscription either.
        await handle.signal(paymentOutcomeSignal, { outcome: 'failed', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_001, eventId: 'evt_forged_failure', reason: 'card_declined' });
        await expect.poll(() => fakes.inputsOf(workflowId, 'confirmInvoicePayment').length).toBe(2);
        await settle();
        expect(await view(workflowId)).toMatchObject({ status: 'pending', sagaStep: 'await-first-payment' });
        expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')).toEqual([]);

        fakes.stripeSaysInvoice(FIRST_INVOICE.invoiceId, 'paid');
        await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_002, eventId: 'evt_real', amountPaid: 1500, currency: 'eur' });
        await waitForView(client, workflowId, (v) => v.status === 'active');
        expect(fakes.inputsOf(workflowId, 'provisionEntitlements')).toHaveLength(1);
      } finally {
        fakes.stripeSaysInvoice(FIRST_INVOICE.invoiceId, null);
      }
      await handle.terminate('test done');
    });

    it('a forged renewal payment, subscription cancellation or dunning "invoice paid" changes nothing: past_due stays, the campaign goes on, nothing is restored or revoked', async () => {
      const { workflowId, input, handle } = await start({ firstPayment: 'paid' });
      await waitForView(client, workflowId, (v) => v.status === 'active');
      const invoiceId = `in_forged_${randomUUID().replaceAll('-', '')}`;
      await handle.signal(paymentFailedSignal, { eventId: `evt_f_${invoiceId}`, eventCreated: Math.floor(Date.now() / 1000), invoiceId, declineCode: 'insufficient_funds' });
      await waitForView(client, workflowId, (v) => v.status === 'past_due' && v.dunning.some((c) => c.invoiceId === invoiceId));
      const campaign = client.workflow.getHandle(dunningWorkflowId(input.subscriptionId, invoiceId));
      await expect.poll(async () => (await campaign.query<DunningView>(dunningStateQuery)).attempt, { timeout: 15_000 }).toBe(1);

      // Plaintext first: a campaign takes "invoice paid" with any argument, so only the refusal keeps it from even asking Stripe.
      // (The campaign asked Stripe once already, when it started, whether the invoice is an unpaid one of the subscription.)
      const askedAtStart = fakes.inputsOf(campaign.workflowId, 'confirmInvoicePayment').length;
      expect(askedAtStart).toBe(1);
      await plain.workflow.getHandle(campaign.workflowId).signal(dunningInvoicePaidSignal, { eventId: `evt_plain_${invoiceId}` });
      await plain.workflow.getHandle(campaign.workflowId).signal('dunningInvoicePaid');
      await settle();
      expect(fakes.inputsOf(campaign.workflowId, 'confirmInvoicePayment')).toHaveLength(askedAtStart);

      fakes.stripeSaysInvoice(invoiceId, 'pending');
      fakes.stripeSaysNotCanceled(input.subscriptionId);
      await handle.signal(renewalPaidSignal, { eventId: `evt_p_${invoiceId}`, eventCreated: Math.floor(Date.now() / 1000) + 1, invoiceId, amountPaid: 1500, currency: 'eur' });
      await handle.signal(subscriptionCanceledSignal, { eventId: `evt_c_${invoiceId}`, eventCreated: Math.floor(Date.now() / 1000) + 2 });
      await campaign.signal(dunningInvoicePaidSignal, { eventId: `evt_d_${invoiceId}` });
      await expect.poll(() => fakes.inputsOf(workflowId, 'confirmInvoicePayment').filter((c) => c.claimed === 'paid').length).toBe(1);
      await expect.poll(() => fakes.inputsOf(workflowId, 'confirmSubscriptionCanceled').length).toBe(1);
      await expect.poll(() => fakes.inputsOf(campaign.workflowId, 'confirmInvoicePayment').length).toBe(askedAtStart + 1);
      await settle();

      expect(await view(workflowId)).toMatchObject({ status: 'past_due', failedInvoiceIds: [invoiceId] });
      expect((await campaign.query<DunningView>(dunningStateQuery)).state).toBe('retrying');
      expect(fakes.inputsOf(workflowId, 'revokeEntitlements')).toEqual([]);
      expect(fakes.inputsOf(campaign.workflowId, 'restoreEntitlements')).toEqual([]);
      expect((await handle.describe()).status.name).toBe('RUNNING');
      await campaign.terminate('test done');
      await handle.terminate('test done');
    });

    it('a forged payment failure of an invoice that is not an unpaid one of the subscription starts no campaign; a campaign started directly for it fails at once', async () => {
      const { workflowId, input, handle } = await start({ firstPayment: 'paid' });
      await waitForView(client, workflowId, (v) => v.status === 'active');
      const invoiceId = `in_theirs_${randomUUID().replaceAll('-', '')}`;
      fakes.stripeSaysInvoice(invoiceId, 'not_ours');
      await handle.signal(paymentFailedSignal, { eventId: `evt_f_${invoiceId}`, eventCreated: Math.floor(Date.now() / 1000), invoiceId, declineCode: 'insufficient_funds' });
      await expect.poll(() => fakes.inputsOf(workflowId, 'confirmInvoicePayment').length).toBe(1);
      await settle();
      expect(await view(workflowId)).toMatchObject({ status: 'active', failedInvoiceIds: [], dunning: [] });

      const campaignId = dunningWorkflowId(input.subscriptionId, invoiceId);
      const direct = await client.workflow.start('dunningWorkflow', {
        taskQueue: config.temporal.taskQueue,
        workflowId: campaignId,
        args: [{ subscriptionId: input.subscriptionId, customerId: input.customer.customerId, priceId: PRICE, invoiceId, failedAt: Math.floor(Date.now() / 1000), declineCode: 'stolen_card' }],
      });
      const err = await direct.result().then(
        () => expect.fail('the campaign must fail'),
        (e: unknown) => e,
      );
      expect((err as WorkflowFailedError).cause).toMatchObject({ type: 'DunningInvoiceNotOfSubscription', nonRetryable: true });
      expect(fakes.callsOf(campaignId).map((c) => c.name)).toEqual(['confirmInvoicePayment']);
      await handle.terminate('test done');
    });
  });
});
