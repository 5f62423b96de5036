import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, type NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServices, type Services } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { WORKFLOW_BUNDLE_OPTIONS } from '../../src/worker/worker';
import { dunningStateQuery, dunningWorkflowId, type DunningPolicy, type DunningView } from '../../workflows/dunning-contracts';
import { cancelSubscriptionUpdate, paymentFailedSignal, paymentMethodUpdatedSignal, renewalPaidSignal, subscriptionWorkflowId } from '../../workflows/subscription-contracts';
import { createSubscriptionWorkflow } from '../../workflows/subscriptions';
import { quietLog, silentLogger } from '../support/runtime';
import { testConfig } from '../support/stack';
import { createSubscriptionFakes, FAST_DUNNING_POLICY, runFakeWorkers, subscriptionInput, waitForView, type SubscriptionFakes } from '../support/subscription-fakes';


/**
 * Dunning campaigns on the dev server with activity fakes and schedules in seconds: a
 * failed renewal reaching a subscription's workflow starts a campaign per invoice; the
 * campaign retries, escalates and undoes its escalation as the policy it pinned says.
 */
describe('dunning campaigns', () => {
  const config = testConfig({ TEMPORAL_TASK_QUEUE: `dunning-${randomUUID()}` });
  let services: Services;
  let client: Client;
  let connection: NativeConnection;
  let fakes: SubscriptionFakes;
  let workers: { stop(): Promise<void> } | undefined;

  beforeAll(async () => {
    services = createServices(config, quietLog);
    client = await connectClient(config, services.dataConverter);
    connection = await connectWorker(config);
    fakes = createSubscriptionFakes();
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

  /** An active subscription on a price of its own, so each test sets its own policy. */
  async function activeSubscription(policy: DunningPolicy = FAST_DUNNING_POLICY) {
    const priceId = `price_${randomUUID().replace(/-/g, '')}`;
    fakes.setDunningPolicy(priceId, policy);
    const input = subscriptionInput({ priceId });
    const workflowId = subscriptionWorkflowId(input.subscriptionId);
    await client.workflow.start(createSubscriptionWorkflow, { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
    await waitForView(client, workflowId, (v) => v.status === 'active');
    const subscription = client.workflow.getHandle(workflowId);
    const campaignId = (invoiceId: string) => dunningWorkflowId(input.subscriptionId, invoiceId);
    return {
      priceId,
      subscriptionId: input.subscriptionId,
      workflowId,
      subscription,
      campaignId,
      fail: (invoiceId: string, declineCode?: string) =>
        subscription.signal(paymentFailedSignal, { eventId: `evt_${randomUUID()}`, eventCreated: Math.floor(Date.now() / 1000), invoiceId, ...(declineCode ? { declineCode } : {}) }),
      pay: (invoiceId: string) => subscription.signal(renewalPaidSignal, { eventId: `evt_${randomUUID()}`, eventCreated: Math.floor(Date.now() / 1000) + 1, invoiceId, amountPaid: 1500, currency: 'eur' }),
      campaign: (invoiceId: string) => client.workflow.getHandle(campaignId(invoiceId)),
      /** The campaign's final view; the subscription's workflow starts it asynchronously, so wait for it to exist first. */
      result: async (invoiceId: string) => {
        await waitForCampaign(campaignId(invoiceId), () => true, 30_000);
        return (await client.workflow.getHandle(campaignId(invoiceId)).result()) as DunningView;
      },
      until: (invoiceId: string, predicate: (view: DunningView) => boolean, timeoutMs = 30_000) => waitForCampaign(campaignId(invoiceId), predicate, timeoutMs),
    };
  }

  async function waitForCampaign(workflowId: string, predicate: (view: DunningView) => boolean, timeoutMs: number): Promise<DunningView> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const view = await client.workflow.getHandle(workflowId).query(dunningStateQuery);
        if (predicate(view)) return view;
        last = view;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline) throw new Error(`${workflowId} never reached the expected state; last: ${JSON.stringify(last)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  it('recovers on attempt k: soft declines, then paid; one idempotency key per attempt', async () => {
    const sub = await activeSubscription();
    fakes.retriesAnswer('in_k3', { outcome: 'declined', declineCode: 'insufficient_funds' }, { outcome: 'declined', declineCode: 'insufficient_funds' }, { outcome: 'paid', declineCode: null });
    await sub.fail('in_k3');
    const done = await sub.result('in_k3');
    expect(done).toMatchObject({ state: 'recovered', attempt: 3, suspended: false, nextAttemptAt: null });
    expect(done.history.map((h) => h.outcome)).toEqual(['declined', 'declined', 'paid']);
    const id = sub.campaignId('in_k3');
    expect(fakes.inputsOf(id, 'retryInvoicePayment').map((i) => i.idempotencyKey)).toEqual([`${id}:attempt-1`, `${id}:attempt-2`, `${id}:attempt-3`]);
    expect(fakes.inputsOf(id, 'queueDunningNotice').map((i) => i.attempt)).toEqual([1, 2, 3]);
    expect(fakes.inputsOf(id, 'suspendEntitlements')).toEqual([]);
    const actions = fakes.inputsOf(id, 'recordAudit').map((a) => a.action);
    expect(actions).toEqual(expect.arrayContaining(['dunning.started', 'dunning.retry', 'dunning.recovered']));
    // The subscription's workflow heard of it; the search attributes show where the campaign ended.
    const view = await waitForView(client, sub.workflowId, (v) => v.dunning.some((d) => d.invoiceId === 'in_k3' && d.state === 'recovered'));
    expect(view.dunning).toEqual([{ invoiceId: 'in_k3', state: 'recovered', attempt: 3, nextAttemptAt: null, suspended: false }]);
    const attributes = (await sub.campaign('in_k3').describe()).typedSearchAttributes;
    expect(attributes.get(SEARCH_ATTRIBUTES.DunningState)).toBe('recovered');
    expect(attributes.get(SEARCH_ATTRIBUTES.DunningAttempt)).toBe(3);
  });

  it('retries at once when the payment method is updated during a wait', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [3600] });
    fakes.retriesAnswer('in_pm', { outcome: 'paid', declineCode: null });
    await sub.fail('in_pm');
    const waiting = await sub.until('in_pm', (v) => v.attempt === 1 && v.nextAttemptAt !== null);
    expect(waiting.nextAttemptAt! - Date.now()).toBeGreaterThan(3_000_000);
    await sub.subscription.signal(paymentMethodUpdatedSignal, { eventId: `evt_${randomUUID()}`, eventCreated: Math.floor(Date.now() / 1000), paymentMethodId: 'pm_new' });
    const done = await sub.result('in_pm');
    expect(done.state).toBe('recovered');
    expect(done.history).toEqual([expect.objectContaining({ attempt: 1, trigger: 'payment_method_updated', outcome: 'paid' })]);
  });

  it('goes straight to the final action on a hard decline: no retry, suspended, canceled', async () => {
    const sub = await activeSubscription();
    await sub.fail('in_hard', 'stolen_card');
    const done = await sub.result('in_hard');
    expect(done).toMatchObject({ state: 'canceled', attempt: 0, suspended: true, history: [] });
    const id = sub.campaignId('in_hard');
    expect(fakes.inputsOf(id, 'retryInvoicePayment')).toEqual([]);
    expect(fakes.inputsOf(id, 'cancelStripeSubscription')).toEqual([{ subscriptionId: sub.subscriptionId, atPeriodEnd: false, idempotencyKey: `${id}:final-cancel` }]);
    // The subscription's workflow takes the campaign's word: canceled, and it ends, revoking what it granted.
    await expect(sub.subscription.result()).resolves.toMatchObject({ status: 'canceled' });
  });

  it('asks Stripe for the decline code the webhook did not carry, and treats a hard one as hard', async () => {
    const sub = await activeSubscription();
    fakes.declinedWith('in_asked', 'fraudulent');
    await sub.fail('in_asked');
    const done = await sub.result('in_asked');
    expect(done).toMatchObject({ state: 'canceled', attempt: 0, history: [] });
    expect(fakes.inputsOf(sub.campaignId('in_asked'), 'lastDeclineCode')).toEqual([{ invoiceId: 'in_asked' }]);
    expect(fakes.inputsOf(sub.campaignId('in_asked'), 'retryInvoicePayment')).toEqual([]);
  });

  it('stops retrying on a hard decline at a retry', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, finalAction: 'leave_past_due' });
    fakes.retriesAnswer('in_hard2', { outcome: 'declined', declineCode: 'insufficient_funds' }, { outcome: 'declined', declineCode: 'lost_card' });
    await sub.fail('in_hard2');
    const view = await sub.until('in_hard2', (v) => v.state === 'past_due');
    expect(view).toMatchObject({ attempt: 2, suspended: true });
    expect(fakes.inputsOf(sub.campaignId('in_hard2'), 'retryInvoicePayment')).toHaveLength(2);
    await sub.campaign('in_hard2').terminate('test over');
  });

  it('exhausts its attempts: suspended, then the final action; paid afterwards, the entitlements come back', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [1, 2], maxAttempts: 2, finalAction: 'mark_unpaid' });
    await sub.fail('in_ex');
    const unpaid = await sub.until('in_ex', (v) => v.state === 'unpaid');
    expect(unpaid).toMatchObject({ attempt: 2, suspended: true, nextAttemptAt: null });
    const id = sub.campaignId('in_ex');
    const order = fakes.callsOf(id).map((c) => c.name).filter((n) => n === 'retryInvoicePayment' || n === 'suspendEntitlements');
    expect(order).toEqual(['retryInvoicePayment', 'retryInvoicePayment', 'suspendEntitlements']);
    await waitForView(client, sub.workflowId, (v) => v.status === 'unpaid');

    await sub.pay('in_ex');
    const done = await sub.result('in_ex');
    expect(done).toMatchObject({ state: 'recovered', suspended: false });
    expect(fakes.entitlementChangesOf(sub.subscriptionId)).toEqual(['revoked', 'restored']);
    await waitForView(client, sub.workflowId, (v) => v.status === 'active' && v.failedInvoiceIds.length === 0);
  });

  it('restores the entitlements when the invoice is paid after the grace period suspended them, mid-campaign', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [1, 3600], gracePeriodSeconds: 2 });
    await sub.fail('in_grace');
    await sub.until('in_grace', (v) => v.state === 'suspended' && v.attempt === 2);
    await sub.pay('in_grace');
    const done = await sub.result('in_grace');
    expect(done).toMatchObject({ state: 'recovered', suspended: false, attempt: 2 });
    expect(fakes.entitlementChangesOf(sub.subscriptionId)).toEqual(['revoked', 'restored']);
    expect(fakes.inputsOf(sub.campaignId('in_grace'), 'recordAudit').map((a) => a.action)).toEqual(expect.arrayContaining(['dunning.suspend', 'dunning.restore']));
  });

  it('keeps the policy it started with when the policy changes during the campaign', async () => {
    const pinned = { ...FAST_DUNNING_POLICY, name: 'before', retryOffsetsSeconds: [1, 2, 3], maxAttempts: 3, finalAction: 'leave_past_due' as const };
    const sub = await activeSubscription(pinned);
    await sub.fail('in_p1');
    await sub.until('in_p1', (v) => v.attempt === 1);
    fakes.setDunningPolicy(sub.priceId, { ...pinned, name: 'after', maxAttempts: 1, retryOffsetsSeconds: [3600] });
    const view = await sub.until('in_p1', (v) => v.state === 'past_due');
    expect(view).toMatchObject({ attempt: 3, policy: pinned });
    // A campaign started after the change pins the new policy.
    await sub.fail('in_p2');
    const later = await sub.until('in_p2', (v) => v.policy !== null);
    expect(later.policy?.name).toBe('after');
    for (const invoice of ['in_p1', 'in_p2']) await sub.campaign(invoice).terminate('test over').catch(() => undefined);
  });

  it('runs two campaigns for two failed invoices without suspending twice', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [3600], gracePeriodSeconds: 1 });
    await sub.fail('in_a');
    await sub.fail('in_b');
    await sub.until('in_a', (v) => v.suspended);
    await sub.until('in_b', (v) => v.suspended);
    expect(fakes.entitlementChangesOf(sub.subscriptionId)).toEqual(['revoked']);
    await sub.pay('in_a');
    await sub.until('in_a', (v) => v.state === 'recovered');
    // in_b still suspends them.
    expect(fakes.entitlementChangesOf(sub.subscriptionId)).toEqual(['revoked']);
    await sub.pay('in_b');
    await sub.until('in_b', (v) => v.state === 'recovered');
    expect(fakes.entitlementChangesOf(sub.subscriptionId)).toEqual(['revoked', 'restored']);
    const view = await waitForView(client, sub.workflowId, (v) => v.dunning.length === 2 && v.dunning.every((d) => d.state === 'recovered'));
    expect(view).toMatchObject({ status: 'active', failedInvoiceIds: [] });
  });

  it('stops its campaigns when the subscription is canceled at once on request', async () => {
    const sub = await activeSubscription({ ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [3600] });
    await sub.fail('in_stop');
    await sub.until('in_stop', (v) => v.attempt === 1);
    await sub.subscription.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: false }] });
    const done = await sub.result('in_stop');
    expect(done).toMatchObject({ state: 'stopped', history: [] });
    expect(fakes.inputsOf(sub.campaignId('in_stop'), 'retryInvoicePayment')).toEqual([]);
    await expect(sub.subscription.result()).resolves.toMatchObject({ status: 'canceled' });
  });

  it('refuses invalid input with a typed non-retryable failure', async () => {
    const handle = await client.workflow.start('dunningWorkflow', {
      taskQueue: config.temporal.taskQueue,
      workflowId: `dunning-invalid-${randomUUID()}`,
      args: [{ subscriptionId: 'nope', invoiceId: 'in_x', customerId: 'c', priceId: 'p', failedAt: -1 }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect((err as { cause?: { type?: string; message?: string } }).cause).toMatchObject({ type: 'InvalidDunningInput' });
    expect((err as { cause: { message: string } }).cause.message).toMatch(/subscriptionId.*failedAt/);
  });
});
