/**
 * Records the histories test/integration/replay.test.ts replays, so a workflow change that
 * would break running executions fails CI. Re-record only for a deliberate, compatible
 * change of the workflows, after moving the current files into a subfolder named for the
 * version they show (running executions may still have that shape, so they keep replaying):
 *
 *   npx tsx test/support/record-histories.ts
 *
 * It starts its own Temporal dev server (the pinned CLI), runs every path of the
 * subscription, dunning and key-rotation workflows against the activity fakes, and writes
 * one JSON history per run under test/histories/. No payload codec: payloads are plain JSON, so
 * replay needs no KMS key of this run, and every value in them is fake (the "sealed"
 * customer fields are base64 of `fake-ciphertext-of-…`). Tracing is on, as in production:
 * the histories carry the OpenTelemetry trace context in their headers.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { Client, type WorkflowHandle } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry/lib/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode } from '@temporalio/worker';
import { REPO_ROOT } from '../../src/stack/paths';
import { serverPath } from '../../src/stack/servers';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import { TRACED_WORKFLOW_BUNDLE_OPTIONS } from '../../src/worker/worker';
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
} from '../../workflows/subscription-contracts';
import { createSubscriptionWorkflow } from '../../workflows/subscriptions';
import { historyToJson } from './histories';
import { rotationProgressQuery, type KeyRotationInput } from '../../workflows/key-rotation-contracts';
import { dunningStateQuery, dunningWorkflowId, type DunningPolicy, type DunningView } from '../../workflows/dunning-contracts';
import { createSubscriptionFakes, FAST_DUNNING_POLICY, fakeSealedCustomer, FIRST_INVOICE, runFakeWorkers, subscriptionInput, waitForView, type Scenario } from './subscription-fakes';

export const HISTORIES_DIR = path.join(REPO_ROOT, 'test', 'histories', 'subscriptions');
export const DUNNING_HISTORIES_DIR = path.join(REPO_ROOT, 'test', 'histories', 'dunning');
export const ROTATION_HISTORIES_DIR = path.join(REPO_ROOT, 'test', 'histories', 'key-rotation');
const TASK_QUEUE = 'record-histories';

/** Stable ids per scenario, so re-recording changes only what changed. */
function idsFor(name: string) {
  const hex = createHash('sha256').update(name).digest('hex');
  return { subscriptionId: `sub_ll_${hex.slice(0, 24)}`, customerId: `cust_${hex.slice(24, 48)}` };
}

async function main() {
  const toolsDir = process.env.LEDGERLOCK_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools');
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: serverPath('temporal', toolsDir) },
      ip: '127.0.0.1',
      ui: false,
      searchAttributes: Object.values(SEARCH_ATTRIBUTES),
      log: { format: 'pretty', level: 'warn' },
    },
  });
  const fakes = createSubscriptionFakes();
  const workers = await runFakeWorkers({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue: TASK_QUEUE,
    fakes,
    // Recorded with tracing on: the trace context rides in headers, which replay under either bundle.
    workflowBundle: await bundleWorkflowCode({ ...TRACED_WORKFLOW_BUNDLE_OPTIONS }),
  });
  // Recorded with tracing on, as production runs: the client's trace context rides in the start's headers,
  // the workflow's in every activity and child it schedules (the tracing interceptors are in the bundle).
  new NodeTracerProvider().register();
  const client = new Client({ connection: env.connection, namespace: env.namespace ?? 'default', interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } });
  const written: string[] = [];
  // The current shapes only: subfolders keep histories of earlier workflow versions, which must replay too.
  for (const dir of [HISTORIES_DIR, DUNNING_HISTORIES_DIR, ROTATION_HISTORIES_DIR]) {
    mkdirSync(dir, { recursive: true });
    for (const file of readdirSync(dir)) if (file.endsWith('.json')) rmSync(path.join(dir, file));
  }
  // The subscriptions' life runs on 2023 event times: campaigns of that price wait for years, so they stay out of the way.
  fakes.setDunningPolicy('price_fake_monthly', { ...FAST_DUNNING_POLICY, retryOffsetsSeconds: [20 * 365 * 86_400], gracePeriodSeconds: 20 * 365 * 86_400 });

  const save = async (file: string, handle: WorkflowHandle, dir = HISTORIES_DIR) => {
    writeFileSync(path.join(dir, `${file}.json`), `${JSON.stringify(historyToJson(await handle.fetchHistory()), null, 1)}\n`);
    written.push(file);
  };
  const start = async (name: string, scenario: Scenario, overrides: Partial<CreateSubscriptionInput> = {}) => {
    const { subscriptionId, customerId } = idsFor(name);
    const input = subscriptionInput({ subscriptionId, customer: fakeSealedCustomer(customerId), requestedBy: 'svc-recorder', ...overrides });
    const workflowId = subscriptionWorkflowId(subscriptionId);
    fakes.scenario(workflowId, scenario);
    const handle = await client.workflow.start(createSubscriptionWorkflow, { taskQueue: TASK_QUEUE, workflowId, args: [input] });
    return { workflowId, handle };
  };
  const failed = async (name: string, scenario: Scenario, act?: (handle: WorkflowHandle) => Promise<void>, overrides: Partial<CreateSubscriptionInput> = {}) => {
    const { handle } = await start(name, scenario, overrides);
    await act?.(handle);
    await handle.result().then(
      () => Promise.reject(new Error(`${name} should have failed`)),
      () => undefined,
    );
    await save(name, client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId));
  };

  try {
    await Promise.all([
      failed('fail-at-store-customer', { failing: ['storeCustomer'] }),
      failed('fail-at-create-stripe-customer', { failing: ['createStripeCustomer'] }),
      failed('fail-at-attach-payment-method', { failing: ['attachPaymentMethod'] }),
      failed('fail-at-create-stripe-subscription', { failing: ['createStripeSubscription'] }),
      failed('first-payment-declined-at-once', { firstPayment: 'failed' }),
      failed('fail-at-provision-entitlements', { failing: ['provisionEntitlements'] }),
      failed('fail-at-mark-active', { failing: ['markSubscriptionActive'] }),
      failed('compensation-keeps-failing', { failing: ['createStripeSubscription', 'deleteStripeCustomer'] }),
      failed('payment-window-expired', { firstPayment: 'requires_action' }, undefined, { paymentWindowSeconds: 2 }),
      failed('first-payment-failed-signal', { firstPayment: 'requires_action' }, async (handle) => {
        await waitForView(client, handle.workflowId, (v) => v.sagaStep === 'await-first-payment');
        await handle.signal(paymentOutcomeSignal, { outcome: 'failed', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_100, eventId: 'evt_failed', reason: 'card_declined' });
      }),
      recordThreeDSecurePaid(),
      recordLife(),
      ...recordDunning(),
      ...recordRotations(),
    ]);
    // Alone: what Stripe says about the first invoice is shared by every saga of the run.
    await recordForgedFirstPayment();
  } finally {
    await workers.stop();
    await env.teardown();
  }
  console.log(`wrote ${written.length} histories under ${path.relative(REPO_ROOT, path.dirname(HISTORIES_DIR))}: ${written.sort().join(', ')}`);

  /**
   * The rotation saga: completed, undone after a failed verification, refused while another
   * runs; and an emergency rotation that ends the grace period of a routine one.
   */
  function recordRotations(): Promise<void>[] {
    const rotation = async (name: string, scenario: Scenario, input: KeyRotationInput = { requestedBy: 'svc-recorder' }, whileRunning?: () => Promise<void>) => {
      const workflowId = `key-rotation:${name}`;
      fakes.scenario(workflowId, scenario);
      const handle = await client.workflow.start('keyRotationWorkflow', { taskQueue: TASK_QUEUE, workflowId, args: [input] });
      await whileRunning?.();
      await handle.result().catch(() => undefined);
      await save(name, handle, ROTATION_HISTORIES_DIR);
    };
    const routine = 'key-rotation:rotation-grace-ended-early';
    const inGrace = async () => {
      while ((await client.workflow.getHandle(routine).query(rotationProgressQuery).catch(() => undefined))?.stage !== 'grace') {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    return [
      rotation('rotation-completed', {}),
      rotation('rotation-verification-failed', { failing: ['verifyRewrappedKeys'] }),
      rotation('rotation-promotion-failed', { failing: ['promoteMasterKey'] }),
      rotation('rotation-refused-while-running', { failing: ['beginRotation'] }),
      // A routine rotation with a week of grace, whose grace an emergency rotation ends.
      rotation('rotation-grace-ended-early', { rotation: { graceSeconds: 7 * 86_400 } }, undefined, async () => {
        await inGrace();
        await rotation('rotation-emergency', { rotation: { graceToEnd: [routine] } }, { requestedBy: 'svc-recorder', reason: 'suspected compromise' });
      }),
    ];
  }

  /** One campaign per path, each on a policy of its own (a price of its own), in seconds. */
  function recordDunning(): Promise<void>[] {
    const until = async (dunning: WorkflowHandle, predicate: (v: DunningView) => boolean) => {
      for (let i = 0; i < 300; i++) {
        const view = await dunning.query(dunningStateQuery).catch(() => undefined);
        if (view && predicate(view)) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`${dunning.workflowId} never reached the expected state`);
    };
    const campaign = async (name: string, policy: Partial<DunningPolicy>, act: (c: { subscription: WorkflowHandle; dunning: WorkflowHandle; invoiceId: string }) => Promise<void>, declineCode?: string) => {
      const priceId = `price_${name.replace(/-/g, '_')}`;
      fakes.setDunningPolicy(priceId, { ...FAST_DUNNING_POLICY, ...policy, name });
      const { workflowId } = await start(name, { firstPayment: 'paid' }, { priceId });
      await waitForView(client, workflowId, (v) => v.status === 'active');
      const subscription = client.workflow.getHandle(workflowId);
      const invoiceId = `in_${name.replace(/-/g, '_')}`;
      await subscription.signal(paymentFailedSignal, { eventId: `evt_${name}`, eventCreated: Math.floor(Date.now() / 1000), invoiceId, ...(declineCode ? { declineCode } : {}) });
      await waitForView(client, workflowId, (v) => v.dunning.some((d) => d.invoiceId === invoiceId));
      const { subscriptionId } = idsFor(name);
      const dunning = client.workflow.getHandle(dunningWorkflowId(subscriptionId, invoiceId));
      // The subscription's workflow starts the campaign from its main loop: wait until it exists.
      await until(dunning, () => true);
      await act({ subscription, dunning, invoiceId });
      await save(name, dunning, DUNNING_HISTORIES_DIR);
      return { subscription };
    };
    const paid = (subscription: WorkflowHandle, invoiceId: string) =>
      subscription.signal(renewalPaidSignal, { eventId: `evt_paid_${invoiceId}`, eventCreated: Math.floor(Date.now() / 1000) + 1, invoiceId, amountPaid: 1500, currency: 'eur' });
    return [
      campaign('dunning-recovered-at-attempt-2', {}, async ({ dunning, invoiceId }) => {
        fakes.retriesAnswer(invoiceId, { outcome: 'declined', declineCode: 'insufficient_funds' }, { outcome: 'paid', declineCode: null });
        await dunning.result();
      }).then(() => undefined),
      campaign('dunning-payment-method-updated', { retryOffsetsSeconds: [3600] }, async ({ subscription, dunning, invoiceId }) => {
        fakes.retriesAnswer(invoiceId, { outcome: 'paid', declineCode: null });
        await until(dunning, (v) => v.attempt === 1);
        await subscription.signal(paymentMethodUpdatedSignal, { eventId: 'evt_pm_dunning', eventCreated: Math.floor(Date.now() / 1000), paymentMethodId: 'pm_new' });
        await dunning.result();
      }).then(() => undefined),
      campaign(
        'dunning-hard-decline-cancels',
        {},
        async ({ subscription, dunning }) => {
          await dunning.result();
          await subscription.result();
          await save('live-canceled-by-dunning', subscription);
        },
        'stolen_card',
      ).then(() => undefined),
      campaign('dunning-exhausted-unpaid-then-paid', { retryOffsetsSeconds: [1, 2], maxAttempts: 2, finalAction: 'mark_unpaid' }, async ({ subscription, dunning, invoiceId }) => {
        await until(dunning, (v) => v.state === 'unpaid');
        await paid(subscription, invoiceId);
        await dunning.result();
      }).then(() => undefined),
      campaign('dunning-suspended-at-grace-then-paid', { retryOffsetsSeconds: [1, 3600], gracePeriodSeconds: 2 }, async ({ subscription, dunning, invoiceId }) => {
        await until(dunning, (v) => v.state === 'suspended' && v.attempt === 2);
        await paid(subscription, invoiceId);
        await dunning.result();
      }).then(() => undefined),
      campaign('dunning-stopped-by-cancellation', { retryOffsetsSeconds: [3600] }, async ({ subscription, dunning }) => {
        await until(dunning, (v) => v.attempt === 1);
        await subscription.signal(subscriptionCanceledSignal, { eventId: 'evt_canceled_dunning', eventCreated: Math.floor(Date.now() / 1000) + 5 });
        await dunning.result();
        await subscription.result();
        await save('live-with-dunning-until-canceled', subscription);
      }).then(() => undefined),
    ];
  }

  /** Creation waiting for 3-D Secure, a live event arriving early, then paid. */
  async function recordThreeDSecurePaid() {
    const { workflowId, handle } = await start('create-3ds-then-paid', { firstPayment: 'requires_action' });
    await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
    await handle.signal(paymentMethodUpdatedSignal, { eventId: 'evt_pm_early', eventCreated: 1_700_000_050, paymentMethodId: 'pm_early' });
    await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_100, eventId: 'evt_paid', amountPaid: 1500, currency: 'eur' });
    await waitForView(client, workflowId, (v) => v.status === 'active');
    await save('create-3ds-then-paid', client.workflow.getHandle(workflowId, handle.firstExecutionRunId));
    await handle.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: false, requestedBy: 'svc-recorder' }] });
    await handle.result();
    await save('live-canceled-immediately', client.workflow.getHandle(workflowId));
  }

  /** Creation waiting for 3-D Secure: a "paid" signal Stripe does not back is ignored, then the real one activates. */
  async function recordForgedFirstPayment() {
    const { workflowId, handle } = await start('first-payment-forged-then-paid', { firstPayment: 'requires_action' });
    await waitForView(client, workflowId, (v) => v.sagaStep === 'await-first-payment');
    fakes.stripeSaysInvoice(FIRST_INVOICE.invoiceId, 'pending');
    await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_100, eventId: 'evt_forged', amountPaid: 1500, currency: 'eur' });
    for (let i = 0; i < 100 && fakes.inputsOf(workflowId, 'confirmInvoicePayment').length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    fakes.stripeSaysInvoice(FIRST_INVOICE.invoiceId, null);
    await handle.signal(paymentOutcomeSignal, { outcome: 'paid', invoiceId: FIRST_INVOICE.invoiceId, eventCreated: 1_700_000_200, eventId: 'evt_paid', amountPaid: 1500, currency: 'eur' });
    await waitForView(client, workflowId, (v) => v.status === 'active');
    await save('first-payment-forged-then-paid', client.workflow.getHandle(workflowId, handle.firstExecutionRunId));
    await handle.terminate('recorded');
  }

  /** Creation paid at once, then the subscription's life across two continue-as-new runs until canceled. */
  async function recordLife() {
    const { workflowId, handle } = await start('create-paid-and-live', { firstPayment: 'paid' }, { continueAsNewAfterEvents: 3 });
    await waitForView(client, workflowId, (v) => v.status === 'active');
    const entity = client.workflow.getHandle(workflowId);
    const firstLiveRun = (await entity.describe()).runId;
    await entity.signal(paymentFailedSignal, { eventId: 'evt_f1', eventCreated: 1_700_100_000, invoiceId: 'in_r1', declineCode: 'insufficient_funds' });
    await entity.signal(paymentFailedSignal, { eventId: 'evt_f0', eventCreated: 1_700_000_000, invoiceId: 'in_r0' });
    await entity.signal(renewalPaidSignal, { eventId: 'evt_p1', eventCreated: 1_700_200_000, invoiceId: 'in_r1', amountPaid: 1500, currency: 'eur' });
    await waitUntilNewRun(client, workflowId, firstLiveRun);
    const secondLiveRun = (await entity.describe()).runId;
    await entity.signal(renewalPaidSignal, { eventId: 'evt_p1', eventCreated: 1_700_200_000, invoiceId: 'in_r1', amountPaid: 1500, currency: 'eur' });
    await entity.executeUpdate(refundInvoiceUpdate, { args: [{ invoiceId: 'in_r1', amount: 500, requestId: 'req-1', requestedBy: 'svc-recorder' }] });
    await entity.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: true, requestedBy: 'svc-recorder' }] });
    await entity.signal(subscriptionCanceledSignal, { eventId: 'evt_c1', eventCreated: 1_702_000_000 });
    await handle.result();
    await save('create-paid', client.workflow.getHandle(workflowId, handle.firstExecutionRunId));
    await save('live-until-continue-as-new', client.workflow.getHandle(workflowId, firstLiveRun));
    await save('live-until-canceled', client.workflow.getHandle(workflowId, secondLiveRun));
  }
}

async function waitUntilNewRun(client: Client, workflowId: string, runId: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await client.workflow.getHandle(workflowId).describe()).runId !== runId) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${workflowId} did not continue as new`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
