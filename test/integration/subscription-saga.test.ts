import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { bundleWorkflowCode, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registry } from '../../src/metrics/metrics';
import { createServices, type Services } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { WORKFLOW_BUNDLE_OPTIONS } from '../../src/worker/worker';
import {
  cancelSubscriptionUpdate,
  paymentFailedSignal,
  paymentMethodUpdatedSignal,
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
  FIRST_INVOICE,
  runFakeWorkers,
  subscriptionInput,
  waitForView,
  type FakeActivityName,
  type Scenario,
  type SubscriptionFakes,
} from '../support/subscription-fakes';

const FORWARD: FakeActivityName[] = [
  'storeCustomer',
  'createStripeCustomer',
  'attachPaymentMethod',
  'createStripeSubscription',
  'provisionEntitlements',
  'markSubscriptionActive',
];
/** Everything undone after step 4, last first. */
const UNDO_TO_STEP_4: FakeActivityName[] = ['cancelStripeSubscription', 'detachPaymentMethod', 'deleteStripeCustomer', 'shredCustomer'];

/** A counter of this process's registry: the fakes' worker runs here and reports through the saga-metrics sinks. */
async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const { values } = await registry.getSingleMetric(name)!.get();
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

describe('subscription workflows on the dev server, with activity fakes and the KMS data converter', () => {
  const config = testConfig({ TEMPORAL_TASK_QUEUE: `subscriptions-${randomUUID()}` });
  let services: Services;
  let client: Client;
  let connection: NativeConnection;
  let bundle: WorkflowBundleWithSourceMap;
  let fakes: SubscriptionFakes;
  let workers: { stop(): Promise<void> } | undefined;

  beforeAll(async () => {
    services = createServices(config, quietLog);
    client = await connectClient(config, services.dataConverter);
    connection = await connectWorker(config);
    bundle = await bundleWorkflowCode({ ...WORKFLOW_BUNDLE_OPTIONS, logger: silentLogger });
    fakes = createSubscriptionFakes();
    workers = await runFakeWorkers({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      fakes,
      workflowBundle: bundle,
      dataConverter: services.dataConverter,
    });
  });
  afterAll(async () => {
    await workers?.stop();
    await connection?.close();
    await client?.connection.close();
    await services?.close();
  });

  async function start(scenario: Scenario = {}, overrides: Partial<CreateSubscriptionInput> = {}) {
    const input = subscriptionInput(overrides);
    const workflowId = subscriptionWorkflowId(input.subscriptionId);
    fakes.scenario(workflowId, scenario);
    const handle = await client.workflow.start(createSubscriptionWorkflow, { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
    return { input, workflowId, handle };
  }

  /** The failure the workflow failed with, unwrapped from the activity failure when there is one. */
  async function failureOf(result: Promise<unknown>): Promise<ApplicationFailure> {
    const err = await result.then(
      () => expect.fail('the workflow should have failed'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause;
    const failure = cause instanceof ActivityFailure ? cause.cause : cause;
    expect(failure).toBeInstanceOf(ApplicationFailure);
    return failure as ApplicationFailure;
  }

  async function updateFailure(update: Promise<unknown>): Promise<ApplicationFailure> {
    const err = await update.then(
      () => expect.fail('the update should have been rejected'),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((err as WorkflowUpdateFailedError).cause).toBeInstanceOf(ApplicationFailure);
    return (err as WorkflowUpdateFailedError).cause as ApplicationFailure;
  }

  const lastRecord = (workflowId: string) => fakes.inputsOf(workflowId, 'recordSubscription').at(-1);

  describe('creation saga', () => {
    it('goes straight to active when the first payment is already paid, with deterministic idempotency keys', async () => {
      const completed = await counter('ledgerlock_saga_completed_total', { saga: 'subscription' });
      const { workflowId, input, handle } = await start({ firstPayment: 'paid' });
      const view = await waitForView(client, workflowId, (v) => v.status === 'active');
      expect(view).toMatchObject({ subscriptionId: input.subscriptionId, customerId: input.customer.customerId, sagaStep: 'completed', stripeSubscriptionId: 'sub_fake' });
      expect(fakes.sagaCalls(workflowId)).toEqual(FORWARD);

      const keyOf = (name: FakeActivityName) => fakes.inputsOf(workflowId, name)[0].idempotencyKey;
      expect(keyOf('createStripeCustomer')).toBe(`${workflowId}:create-stripe-customer`);
      expect(keyOf('attachPaymentMethod')).toBe(`${workflowId}:attach-payment-method`);
      expect(keyOf('createStripeSubscription')).toBe(`${workflowId}:create-stripe-subscription`);
      expect(fakes.inputsOf(workflowId, 'createStripeSubscription')[0]).toMatchObject({ subscriptionId: input.subscriptionId, priceId: input.priceId });
      expect(fakes.inputsOf(workflowId, 'provisionEntitlements')[0]).toEqual({ subscriptionId: input.subscriptionId, customerId: input.customer.customerId, priceId: input.priceId });

      // Every step audited, in order, under a key made of the workflow id and the step.
      const audits = fakes.inputsOf(workflowId, 'recordAudit');
      expect(audits.map((a) => a.details.step)).toEqual([
        'store-customer',
        'create-stripe-customer',
        'attach-payment-method',
        'create-stripe-subscription',
        'await-first-payment',
        'provision-entitlements',
        'mark-active',
      ]);
      expect(audits[0]).toMatchObject({
        action: 'saga.step',
        actor: `workflow:${workflowId}`,
        subjectType: 'subscription',
        subjectId: input.subscriptionId,
        idempotencyKey: `${workflowId}:saga.step:store-customer`,
        details: { step: 'store-customer', customerId: input.customer.customerId, requestedBy: 'svc-test' },
      });
      expect(fakes.inputsOf(workflowId, 'recordSubscription')[0]).toMatchObject({ status: 'pending', sagaStep: 'store-customer' });

      // The first run continued as the subscription's own workflow, same id.
      const first = await client.workflow.getHandle(workflowId, handle.firstExecutionRunId).describe();
      expect(first.status.name).toBe('CONTINUED_AS_NEW');
      const latest = await client.workflow.getHandle(workflowId).describe();
      expect(latest.type).toBe('subscriptionWorkflow');
      expect(latest.typedSearchAttributes.get(SEARCH_ATTRIBUTES.BillingStatus)).toBe('active');
      expect(latest.typedSearchAttributes.get(SEARCH_ATTRIBUTES.SubscriptionId)).toBe(input.subscriptionId);
      expect(latest.typedSearchAttributes.get(SEARCH_ATTRIBUTES.CustomerId)).toBe(input.customer.customerId);
      expect(latest.typedSearchAttributes.get(SEARCH_ATTRIBUTES.SagaStep)).toBe('completed');
      // The saga completed when it continued as the subscription's entity.
      await vi.waitFor(async () => expect(await counter('ledgerlock_saga_completed_total', { saga: 'subscription' })).toBe(completed + 1));
      await handle.terminate('test done');
    });

    it('waits for a first payment that requires action, keeps early webhook events, and activates on the paid signal', async () => {
      const { workflowId, handle } = await start({ firstPayment: 'requires_action' });
      const waiting = await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
      expect(waiting).toMatchObject({ status: 'pending', paymentIntentId: 'pi_first' });
      await expect.poll(() => lastRecord(workflowId)).toMatchObject({ status: 'pending', sagaStep: 'await-first-payment', stripeSubscriptionId: 'sub_fake' });
      const described = await handle.describe();
      expect(described.typedSearchAttributes.get(SEARCH_ATTRIBUTES.SagaStep)).toBe('await-first-payment');
      expect(described.typedSearchAttributes.get(SEARCH_ATTRIBUTES.BillingStatus)).toBe('pending');

      // Not active yet: updates are refused with a type the API can map.
      const early = await updateFailure(handle.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: true }] }));
      expect(early.type).toBe('SubscriptionNotActive');

      // An outcome for another invoice decides nothing; an event of the live subscription is kept for later.
      await handle.signal(paymentOutcomeSignal, { outcome: 'failed', invoiceId: 'in_someone_else', eventCreated: 100, eventId: 'evt_other' });
      await handle.signal(paymentMethodUpdatedSignal, { eventId: 'evt_pm_early', eventCreated: 150, paymentMethodId: 'pm_updated_early' });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await handle.query<SubscriptionView>('subscriptionState')).status).toBe('pending');
      expect(fakes.sagaCalls(workflowId)).toEqual(FORWARD.slice(0, 4));

      await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 200, eventId: 'evt_paid', amountPaid: 1500, currency: 'eur' });
      // The subscription's own workflow applies the event kept for it.
      const active = await waitForView(client, workflowId, (v) => v.status === 'active' && v.paymentMethodId === 'pm_updated_early');
      expect(active.sagaStep).toBe('completed');
      // Stripe is asked before the payment is believed.
      expect(fakes.sagaCalls(workflowId)).toEqual([...FORWARD.slice(0, 4), 'confirmInvoicePayment', ...FORWARD.slice(4)]);
      await handle.terminate('test done');
    });

    it('compensates everything done so far when the first payment fails', async () => {
      const compensated = await counter('ledgerlock_saga_compensated_total', { saga: 'subscription', reason: 'FirstPaymentFailed' });
      const { workflowId, handle } = await start({ firstPayment: 'requires_action' });
      await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
      await handle.signal(paymentOutcomeSignal, { outcome: 'failed', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 300, reason: 'authentication_required' });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe('FirstPaymentFailed');
      expect(failure.message).toContain('authentication_required');
      expect(fakes.sagaCalls(workflowId)).toEqual([...FORWARD.slice(0, 4), 'confirmInvoicePayment', ...UNDO_TO_STEP_4]);
      expect(lastRecord(workflowId)).toMatchObject({ status: 'failed', sagaStep: 'await-first-payment', failure: { type: 'FirstPaymentFailed' } });
      const compensations = fakes.inputsOf(workflowId, 'recordAudit').filter((a) => a.action === 'saga.compensation');
      expect(compensations.map((a) => a.details.step)).toEqual([
        'cancel-stripe-subscription',
        'detach-payment-method',
        'delete-stripe-customer',
        'shred-customer',
      ]);
      expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')[0]).toMatchObject({ atPeriodEnd: false, idempotencyKey: `${workflowId}:cancel-stripe-subscription` });
      expect(fakes.inputsOf(workflowId, 'detachPaymentMethod')[0].idempotencyKey).toBe(`${workflowId}:detach-payment-method`);
      expect(fakes.inputsOf(workflowId, 'deleteStripeCustomer')[0].idempotencyKey).toBe(`${workflowId}:delete-stripe-customer`);
      expect((await handle.describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.BillingStatus)).toBe('failed');
      // Counted once, with the failure that made it undo.
      await vi.waitFor(async () => expect(await counter('ledgerlock_saga_compensated_total', { saga: 'subscription', reason: 'FirstPaymentFailed' })).toBe(compensated + 1));
    });

    it('compensates with PaymentWindowExpired when the payment window closes without an outcome', async () => {
      const { workflowId, handle } = await start({ firstPayment: 'requires_action' }, { paymentWindowSeconds: 2 });
      const startedAt = Date.now();
      const failure = await failureOf(handle.result());
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1_900);
      expect(failure.type).toBe('PaymentWindowExpired');
      expect(fakes.sagaCalls(workflowId)).toEqual([...FORWARD.slice(0, 4), ...UNDO_TO_STEP_4]);
      expect(lastRecord(workflowId)).toMatchObject({ status: 'failed', failure: { type: 'PaymentWindowExpired' } });
    });

    // A step's undo is registered before it runs (it may have half happened), so the failing
    // step is undone too, then every earlier one, last first; nothing after it ever runs.
    it.each<{ step: string; scenario: Scenario; expected: FakeActivityName[] }>([
      { step: '1 store customer', scenario: { failing: ['storeCustomer'] }, expected: ['storeCustomer', 'shredCustomer'] },
      {
        step: '2 Stripe customer',
        scenario: { failing: ['createStripeCustomer'] },
        expected: ['storeCustomer', 'createStripeCustomer', 'deleteStripeCustomer', 'shredCustomer'],
      },
      {
        step: '3 attach payment method',
        scenario: { failing: ['attachPaymentMethod'] },
        expected: ['storeCustomer', 'createStripeCustomer', 'attachPaymentMethod', 'detachPaymentMethod', 'deleteStripeCustomer', 'shredCustomer'],
      },
      { step: '4 Stripe subscription', scenario: { failing: ['createStripeSubscription'] }, expected: [...FORWARD.slice(0, 4), ...UNDO_TO_STEP_4] },
      { step: '5 first payment declined at once', scenario: { firstPayment: 'failed' }, expected: [...FORWARD.slice(0, 4), ...UNDO_TO_STEP_4] },
      {
        step: '6 provision entitlements',
        scenario: { failing: ['provisionEntitlements'] },
        expected: [...FORWARD.slice(0, 5), 'revokeEntitlements', ...UNDO_TO_STEP_4],
      },
      { step: '7 mark active', scenario: { failing: ['markSubscriptionActive'] }, expected: [...FORWARD, 'revokeEntitlements', ...UNDO_TO_STEP_4] },
    ])('a failure at step $step undoes exactly the steps reached, in reverse', async ({ scenario, expected }) => {
      const { workflowId, handle } = await start(scenario);
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe(scenario.failing ? 'InjectedFailure' : 'FirstPaymentFailed');
      if (!scenario.failing) expect(failure.message).toContain('card_declined');
      expect(fakes.sagaCalls(workflowId)).toEqual(expected);
      expect(lastRecord(workflowId)).toMatchObject({ status: 'failed', failure: { type: failure.type } });
    });

    it('retries a compensation that fails for a while, and still fails with the original cause', async () => {
      const { workflowId, handle } = await start({ failing: ['attachPaymentMethod'], flaky: { detachPaymentMethod: 1 } });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe('InjectedFailure');
      expect(fakes.callsOf(workflowId).filter((c) => c.name === 'detachPaymentMethod').map((c) => c.attempt)).toEqual([1, 2]);
      expect(fakes.sagaCalls(workflowId)).toEqual([
        'storeCustomer',
        'createStripeCustomer',
        'attachPaymentMethod',
        'detachPaymentMethod',
        'detachPaymentMethod',
        'deleteStripeCustomer',
        'shredCustomer',
      ]);
    });

    it('fails with CompensationFailed, and its cause, when a compensation keeps failing; the other undos still run', async () => {
      const failedBefore = await counter('ledgerlock_saga_failed_total', { saga: 'subscription', reason: 'CompensationFailed' });
      const { workflowId, handle } = await start({ failing: ['createStripeSubscription', 'deleteStripeCustomer'] });
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      const failure = (err as WorkflowFailedError).cause as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.type).toBe('CompensationFailed');
      expect(failure.details).toEqual([['delete-stripe-customer']]);
      expect(failure.cause).toBeInstanceOf(ActivityFailure);
      expect((failure.cause as ActivityFailure).cause).toMatchObject({ type: 'InjectedFailure' });
      expect(fakes.sagaCalls(workflowId)).toEqual([...FORWARD.slice(0, 4), ...UNDO_TO_STEP_4]);
      const record = lastRecord(workflowId);
      expect(record).toMatchObject({ status: 'failed', failure: { type: 'CompensationFailed' } });
      expect(record.failure.reason).toContain('InjectedFailure at create-stripe-subscription');
      // What the LedgerlockCompensationFailed alert pages on.
      await vi.waitFor(async () => expect(await counter('ledgerlock_saga_failed_total', { saga: 'subscription', reason: 'CompensationFailed' })).toBe(failedBefore + 1));
    });

    it('refuses invalid input before doing anything', async () => {
      const { workflowId, handle } = await start({}, { paymentWindowSeconds: 0, paymentMethodId: '4242424242424242' });
      const failure = await failureOf(handle.result());
      expect(failure.type).toBe('InvalidSubscriptionInput');
      expect(failure.message).toContain('paymentWindowSeconds');
      expect(failure.message).toContain('paymentMethodId');
      expect(failure.message).not.toContain('4242424242424242');
      expect(fakes.callsOf(workflowId)).toEqual([]);
    });
  });

  describe('the subscription after activation', () => {
    let workflowId: string;
    let subscriptionId: string;
    let entityRunId: string;
    const handle = () => client.workflow.getHandle(workflowId);

    beforeAll(async () => {
      const started = await start({ firstPayment: 'paid' }, { continueAsNewAfterEvents: 5 });
      workflowId = started.workflowId;
      subscriptionId = started.input.subscriptionId;
      await waitForView(client, workflowId, (v) => v.status === 'active');
      entityRunId = (await handle().describe()).runId;
    });

    it('goes past_due on a failed payment, recording it and keeping the invoice for dunning', async () => {
      await handle().signal(paymentFailedSignal, { eventId: 'evt_f1', eventCreated: 1_000, invoiceId: 'in_r1', declineCode: 'insufficient_funds' });
      const view = await waitForView(client, workflowId, (v) => v.status === 'past_due');
      expect(view.failedInvoiceIds).toEqual(['in_r1']);
      await expect.poll(() => lastRecord(workflowId)).toMatchObject({ subscriptionId, status: 'past_due', sagaStep: 'completed' });
      expect((await handle().describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.BillingStatus)).toBe('past_due');
    });

    it('keeps a late failure of another invoice for dunning without moving the status back, and ignores a redelivered event id', async () => {
      // Older than the failure that made it past_due, about another invoice: still unpaid, so kept.
      await handle().signal(paymentFailedSignal, { eventId: 'evt_f0', eventCreated: 900, invoiceId: 'in_r0' });
      await handle().signal(paymentFailedSignal, { eventId: 'evt_f1', eventCreated: 1_000, invoiceId: 'in_r1' });
      await handle().signal(renewalPaidSignal, { eventId: 'evt_p1', eventCreated: 1_100, invoiceId: 'in_r1', amountPaid: 1500, currency: 'eur' });
      // Signals are handled in order: once this shows, the three before it were handled.
      const partly = await waitForView(client, workflowId, (v) => !v.failedInvoiceIds.includes('in_r1'));
      expect(partly).toMatchObject({ status: 'past_due', failedInvoiceIds: ['in_r0'] });
      await handle().signal(renewalPaidSignal, { eventId: 'evt_p0', eventCreated: 1_150, invoiceId: 'in_r0', amountPaid: 1500, currency: 'eur' });
      const view = await waitForView(client, workflowId, (v) => v.status === 'active');
      expect(view.failedInvoiceIds).toEqual([]);
    });

    it('continues-as-new after N events, keeping its state and what it has seen', async () => {
      await handle().signal(paymentMethodUpdatedSignal, { eventId: 'evt_m1', eventCreated: 1_200, paymentMethodId: 'pm_one' });
      // Five events before this one: a new run, same workflow id.
      await expect.poll(async () => (await handle().describe()).runId, { timeout: 10_000 }).not.toBe(entityRunId);
      const described = await handle().describe();
      expect(described.type).toBe('subscriptionWorkflow');
      const view = await waitForView(client, workflowId, (v) => v.paymentMethodId === 'pm_one');
      expect(view).toMatchObject({ status: 'active', failedInvoiceIds: [], stripeSubscriptionId: 'sub_fake' });

      // Same second, new id: applied. The first id again, now in the new run: still a duplicate.
      await handle().signal(paymentMethodUpdatedSignal, { eventId: 'evt_m2', eventCreated: 1_200, paymentMethodId: 'pm_two' });
      await handle().signal(paymentMethodUpdatedSignal, { eventId: 'evt_m1', eventCreated: 1_200, paymentMethodId: 'pm_one' });
      // Signals are handled in order: once this marker shows, the two before it were handled.
      await handle().signal(paymentFailedSignal, { eventId: 'evt_f3', eventCreated: 1_300, invoiceId: 'in_r3' });
      const marked = await waitForView(client, workflowId, (v) => v.failedInvoiceIds.includes('in_r3'));
      expect(marked.paymentMethodId).toBe('pm_two');
      await handle().signal(renewalPaidSignal, { eventId: 'evt_p3', eventCreated: 1_400, invoiceId: 'in_r3', amountPaid: 1500, currency: 'eur' });
      await waitForView(client, workflowId, (v) => v.status === 'active' && v.failedInvoiceIds.length === 0);
    });

    it('validates refunds, refunds a paid invoice once per request id, and audits it', async () => {
      const refund = (request: Record<string, unknown>) => handle().executeUpdate(refundInvoiceUpdate, { args: [request as never] });
      expect((await updateFailure(refund({ invoiceId: 'in_r1', amount: 0 }))).type).toBe('InvalidRefundRequest');
      expect((await updateFailure(refund({ invoiceId: 'in_r1', amount: 12.5 }))).type).toBe('InvalidRefundRequest');
      expect((await updateFailure(refund({ invoiceId: 'not-an-invoice' }))).type).toBe('InvalidRefundRequest');
      expect((await updateFailure(refund({ invoiceId: 'in_unknown', amount: 100 }))).type).toBe('InvoiceNotRefundable');
      expect((await updateFailure(refund({ invoiceId: 'in_r1', amount: 1501 }))).type).toBe('RefundExceedsPayment');
      expect(fakes.inputsOf(workflowId, 'refundInvoice')).toEqual([]);

      const result = await refund({ invoiceId: 'in_r1', amount: 500, requestId: 'req-1', requestedBy: 'svc-support' });
      expect(result).toMatchObject({ invoiceId: 'in_r1', amount: 500, currency: 'eur', status: 'succeeded' });
      const again = await refund({ invoiceId: 'in_r1', amount: 500, requestId: 'req-1', requestedBy: 'svc-support' });
      expect(again).toEqual(result);
      expect(fakes.inputsOf(workflowId, 'refundInvoice')).toEqual([{ subscriptionId, invoiceId: 'in_r1', amount: 500, idempotencyKey: `${workflowId}:refund:req-1` }]);
      // 1500 paid, 500 refunded: 1001 is more than is left.
      expect((await updateFailure(refund({ invoiceId: 'in_r1', amount: 1001 }))).type).toBe('RefundExceedsPayment');
      const audit = fakes.inputsOf(workflowId, 'recordAudit').find((a) => a.action === 'subscription.refund');
      expect(audit).toMatchObject({ actor: 'svc-support', subjectId: subscriptionId, details: { invoiceId: 'in_r1', amount: 500, currency: 'eur', refundId: result.refundId } });
    });

    it('rejects an invalid cancel request, then cancels at period end and keeps running', async () => {
      const invalid = await updateFailure(handle().executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: 'yes' } as never] }));
      expect(invalid.type).toBe('InvalidCancelRequest');
      expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')).toEqual([]);

      const view = await handle().executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: true, requestedBy: 'svc-billing' }] });
      expect(view).toMatchObject({ status: 'active', cancelAtPeriodEnd: true });
      expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')).toEqual([{ subscriptionId, atPeriodEnd: true, idempotencyKey: `${workflowId}:cancel-at-period-end` }]);
      await expect.poll(() => lastRecord(workflowId)).toMatchObject({ status: 'active', cancelAtPeriodEnd: true });
      expect((await handle().describe()).status.name).toBe('RUNNING');
    });

    it('ends on the canceled event at period end: refuses a second cancel, revokes entitlements, records canceled', async () => {
      fakes.scenario(workflowId, { delays: { revokeEntitlements: 2_000 } });
      await handle().signal(subscriptionCanceledSignal, { eventId: 'evt_c1', eventCreated: 5_000 });
      await waitForView(client, workflowId, (v) => v.status === 'canceled');
      const refused = await updateFailure(handle().executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: false }] }));
      expect(refused.type).toBe('SubscriptionAlreadyCanceled');

      const final = await handle().result();
      expect(final).toMatchObject({ subscriptionId, status: 'canceled', sagaStep: 'completed' });
      expect(fakes.inputsOf(workflowId, 'revokeEntitlements')).toEqual([{ subscriptionId }]);
      expect(lastRecord(workflowId)).toMatchObject({ status: 'canceled' });
      expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')).toHaveLength(1);
      expect((await handle().describe()).typedSearchAttributes.get(SEARCH_ATTRIBUTES.BillingStatus)).toBe('canceled');
    });
  });

  it('cancels immediately on request: Stripe first, then entitlements revoked, and the workflow ends', async () => {
    const { workflowId, input } = await start({ firstPayment: 'paid' });
    await waitForView(client, workflowId, (v) => v.status === 'active');
    const handle = client.workflow.getHandle(workflowId);
    const view = await handle.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: false }] });
    expect(view.status).toBe('canceled');
    expect(await handle.result()).toMatchObject({ status: 'canceled' });
    expect(fakes.sagaCalls(workflowId).slice(FORWARD.length)).toEqual(['cancelStripeSubscription', 'revokeEntitlements']);
    expect(fakes.inputsOf(workflowId, 'cancelStripeSubscription')).toEqual([
      { subscriptionId: input.subscriptionId, atPeriodEnd: false, idempotencyKey: `${workflowId}:cancel-immediately` },
    ]);
    expect(lastRecord(workflowId)).toMatchObject({ status: 'canceled' });
  });
});
