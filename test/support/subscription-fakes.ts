import { randomBytes } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure, type DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Activities, StripeActivities } from '../../activities';
import type { SealedCustomer } from '../../src/customers/customer-types';
import type { FirstPayment } from '../../src/stripe/first-payment';
import { runWorkersUntil, tracingSinks } from '../../src/worker/worker';
import { STRIPE_QUEUE_SUFFIX } from '../../workflows/activity-options';
import type { CreateSubscriptionInput, SubscriptionView } from '../../workflows/subscription-contracts';
import { DEFAULT_DUNNING_POLICY, type DunningPolicy } from '../../workflows/dunning-contracts';
import type { RetryInvoicePaymentResult } from '../../activities/dunning';
import type { InvoicePaymentFact } from '../../activities/subscriptions';
import { sagaMetricsSinks } from '../../src/worker/saga-metrics';

/**
 * Activity fakes for the subscription workflows: the same names as the real activities,
 * on the same two task queues, recording every call per workflow id in the order they
 * ran. What a workflow meets (first payment, injected failures, delays) is set per
 * workflow id, so workflows running side by side do not disturb each other.
 */

type GeneralFakes = Pick<
  Activities,
  | 'storeCustomer'
  | 'shredCustomer'
  | 'recordAudit'
  | 'recordSubscription'
  | 'provisionEntitlements'
  | 'revokeEntitlements'
  | 'markSubscriptionActive'
  | 'resolveDunningPolicy'
  | 'queueDunningNotice'
  | 'suspendEntitlements'
  | 'restoreEntitlements'
  | 'planRotation'
  | 'beginRotation'
  | 'createMasterKey'
  | 'discardNewMasterKey'
  | 'rewrapDataKeys'
  | 'verifyRewrappedKeys'
  | 'promoteMasterKey'
  | 'demoteMasterKey'
  | 'retireOldMasterKey'
  | 'finishRotation'
  | 'setRotationStage'
>;
type StripeFakes = Pick<
  StripeActivities,
  | 'createStripeCustomer'
  | 'deleteStripeCustomer'
  | 'attachPaymentMethod'
  | 'detachPaymentMethod'
  | 'createStripeSubscription'
  | 'cancelStripeSubscription'
  | 'refundInvoice'
  | 'retryInvoicePayment'
  | 'lastDeclineCode'
  | 'confirmInvoicePayment'
  | 'confirmSubscriptionCanceled'
>;
export type FakeActivityName = keyof GeneralFakes | keyof StripeFakes;

export interface FakeCall {
  readonly name: FakeActivityName;
  readonly input: any;
  readonly attempt: number;
}

export interface Scenario {
  /** What createStripeSubscription reports (default: paid). */
  firstPayment?: FirstPayment;
  /** Activities that fail for good (a non-retryable failure of type InjectedFailure). */
  failing?: FakeActivityName[];
  /** Activities that fail this many times (retryable) before they succeed. */
  flaky?: Partial<Record<FakeActivityName, number>>;
  /** Activities that take this long (ms). */
  delays?: Partial<Record<FakeActivityName, number>>;
  /** Key rotation: the plan's grace period (default 1 s), and the rotations in grace that beginRotation reports. */
  rotation?: { graceSeconds?: number; graceToEnd?: string[] };
}

/** Bookkeeping calls, left out of {@link SubscriptionFakes.sagaCalls}. */
const BOOKKEEPING: readonly FakeActivityName[] = ['recordAudit', 'recordSubscription'];

export const FIRST_INVOICE = { invoiceId: 'in_first', amount: 1500, currency: 'eur' } as const;

/** Seconds, not days: a campaign of the tests runs in seconds. */
export const FAST_DUNNING_POLICY: DunningPolicy = {
  ...DEFAULT_DUNNING_POLICY,
  name: 'fast',
  retryOffsetsSeconds: [1, 2, 3, 4],
  maxAttempts: 4,
  gracePeriodSeconds: 60,
};

export function createSubscriptionFakes() {
  const scenarios = new Map<string, Scenario>();
  const calls = new Map<string, FakeCall[]>();

  function fake<I, R>(name: FakeActivityName, answer: (input: I) => R): (input: I) => Promise<R> {
    return async (input: I): Promise<R> => {
      const info = Context.current().info;
      const workflowId = info.workflowExecution?.workflowId ?? 'unknown';
      const scenario = scenarios.get(workflowId) ?? {};
      const list = calls.get(workflowId) ?? [];
      calls.set(workflowId, list);
      list.push({ name, input, attempt: info.attempt });
      const delay = scenario.delays?.[name];
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      if (scenario.failing?.includes(name)) throw ApplicationFailure.create({ type: 'InjectedFailure', nonRetryable: true, message: `${name} failed (injected)` });
      if (info.attempt <= (scenario.flaky?.[name] ?? 0)) throw ApplicationFailure.create({ type: 'InjectedFlake', message: `${name} flaked (injected)` });
      return answer(input);
    };
  }

  // Dunning: the policy per price (changed while campaigns run), retry outcomes per invoice, suspensions per subscription.
  const policies = new Map<string, DunningPolicy>();
  const retryOutcomes = new Map<string, RetryInvoicePaymentResult[]>();
  const declineCodes = new Map<string, string>();
  const suspensions = new Map<string, Set<string>>();
  const entitlementChanges: { subscriptionId: string; change: 'revoked' | 'restored' }[] = [];
  // Stripe's word on invoices and subscriptions. Unless a test says otherwise, Stripe backs what the signal claimed.
  const invoiceFacts = new Map<string, InvoicePaymentFact['status']>();
  const notCanceled = new Set<string>();

  const currentScenario = (): Scenario => scenarios.get(Context.current().info.workflowExecution?.workflowId ?? '') ?? {};

  let sequence = 0;
  const general: GeneralFakes = {
    storeCustomer: fake('storeCustomer', () => undefined),
    shredCustomer: fake('shredCustomer', () => ({ destroyedKeyIds: ['00000000-0000-4000-8000-000000000000'] })),
    recordAudit: fake('recordAudit', () => ({ seq: String(++sequence), hash: '0'.repeat(64) })),
    recordSubscription: fake('recordSubscription', () => undefined),
    provisionEntitlements: fake('provisionEntitlements', () => ({ granted: true })),
    revokeEntitlements: fake('revokeEntitlements', () => ({ revoked: 1 })),
    markSubscriptionActive: fake('markSubscriptionActive', () => undefined),
    resolveDunningPolicy: fake('resolveDunningPolicy', (input) => policies.get(input.priceId) ?? FAST_DUNNING_POLICY),
    queueDunningNotice: fake('queueDunningNotice', (input) => ({ id: `${input.dunningId}:notice-${input.attempt}`, status: 'sent' as const })),
    suspendEntitlements: fake('suspendEntitlements', (input) => {
      const set = suspensions.get(input.subscriptionId) ?? new Set<string>();
      suspensions.set(input.subscriptionId, set);
      const alreadySuspended = [...set].some((id) => id !== input.invoiceId);
      const first = set.size === 0;
      set.add(input.invoiceId);
      if (first) entitlementChanges.push({ subscriptionId: input.subscriptionId, change: 'revoked' });
      return { revoked: first ? 1 : 0, alreadySuspended };
    }),
    // Key rotation: one region and the codec, five data keys, a one-second grace period unless the scenario says otherwise.
    planRotation: fake('planRotation', () => ({
      targets: [
        { alias: 'alias/fake-eu', purpose: 'region' as const, region: 'eu' },
        { alias: 'alias/fake-temporal-payloads', purpose: 'codec' as const, region: null },
      ],
      graceSeconds: currentScenario().rotation?.graceSeconds ?? 1,
      batchSize: 10,
    })),
    beginRotation: fake('beginRotation', () => ({ graceToEnd: currentScenario().rotation?.graceToEnd ?? [] })),
    createMasterKey: fake('createMasterKey', (input) => ({ newKeyId: `arn:fake:new:${input.target.alias}`, previousKeyId: `arn:fake:old:${input.target.alias}` })),
    discardNewMasterKey: fake('discardNewMasterKey', (input) => ({ discardedKeyId: `arn:fake:new:${input.target.alias}` })),
    rewrapDataKeys: fake('rewrapDataKeys', () => ({ rewrapped: 5 })),
    verifyRewrappedKeys: fake('verifyRewrappedKeys', () => ({ verified: 5 })),
    promoteMasterKey: fake('promoteMasterKey', (input) => ({ promoted: input.target.region === null ? 0 : 5 })),
    demoteMasterKey: fake('demoteMasterKey', (input) => ({ restored: input.target.region === null ? 0 : 5 })),
    retireOldMasterKey: fake('retireOldMasterKey', () => ({ retired: true, references: 0 })),
    finishRotation: fake('finishRotation', () => undefined),
    setRotationStage: fake('setRotationStage', () => undefined),
    restoreEntitlements: fake('restoreEntitlements', (input) => {
      const set = suspensions.get(input.subscriptionId);
      if (!set?.delete(input.invoiceId) || set.size > 0) return { restored: false };
      entitlementChanges.push({ subscriptionId: input.subscriptionId, change: 'restored' });
      return { restored: true };
    }),
  };
  const stripe: StripeFakes = {
    createStripeCustomer: fake('createStripeCustomer', () => ({ stripeCustomerId: 'cus_fake' })),
    deleteStripeCustomer: fake('deleteStripeCustomer', () => ({ deleted: true })),
    attachPaymentMethod: fake('attachPaymentMethod', () => ({ stripeCustomerId: 'cus_fake' })),
    detachPaymentMethod: fake('detachPaymentMethod', () => ({ detached: true })),
    createStripeSubscription: fake('createStripeSubscription', () => {
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? 'unknown';
      const firstPayment = scenarios.get(workflowId)?.firstPayment ?? 'paid';
      return {
        stripeSubscriptionId: 'sub_fake',
        stripeStatus: firstPayment === 'paid' ? 'active' : 'incomplete',
        latestInvoiceId: FIRST_INVOICE.invoiceId,
        paymentIntentId: 'pi_first',
        amountDue: FIRST_INVOICE.amount,
        currency: FIRST_INVOICE.currency,
        firstPayment,
        declineCode: firstPayment === 'failed' ? 'card_declined' : null,
      };
    }),
    cancelStripeSubscription: fake('cancelStripeSubscription', (input) => ({
      outcome: input.atPeriodEnd ? ('cancel_at_period_end' as const) : ('canceled' as const),
      voidedInvoiceId: null,
    })),
    refundInvoice: fake('refundInvoice', (input) => ({
      refundId: `re_fake_${++sequence}`,
      invoiceId: input.invoiceId,
      amount: input.amount ?? 1500,
      currency: 'eur',
      status: 'succeeded',
    })),
    lastDeclineCode: fake('lastDeclineCode', (input) => ({ declineCode: declineCodes.get(input.invoiceId) ?? 'insufficient_funds' })),
    confirmInvoicePayment: fake('confirmInvoicePayment', (input) => {
      const status = invoiceFacts.get(input.invoiceId) ?? input.claimed;
      const paid = status === 'paid';
      return {
        invoiceId: input.invoiceId,
        status,
        amountPaid: paid ? FIRST_INVOICE.amount : null,
        currency: paid ? FIRST_INVOICE.currency : null,
        paidAt: null,
        declineCode: status === 'failed' ? (declineCodes.get(input.invoiceId) ?? null) : null,
      };
    }),
    confirmSubscriptionCanceled: fake('confirmSubscriptionCanceled', (input) => ({ canceled: !notCanceled.has(input.subscriptionId) })),
    retryInvoicePayment: fake('retryInvoicePayment', (input) => retryOutcomes.get(input.invoiceId)?.shift() ?? { outcome: 'declined' as const, declineCode: 'insufficient_funds' }),
  };

  return {
    general,
    stripe,
    /** Sets (or replaces) what the workflow with this id will meet. */
    scenario(workflowId: string, scenario: Scenario): void {
      scenarios.set(workflowId, scenario);
    },
    /** Every call of the workflow's activities, in the order they ran, retries included. */
    callsOf(workflowId: string): FakeCall[] {
      return [...(calls.get(workflowId) ?? [])];
    },
    /** The names of the saga's own calls (audit and record-keeping left out), in order. */
    sagaCalls(workflowId: string): FakeActivityName[] {
      return (calls.get(workflowId) ?? []).filter((c) => !BOOKKEEPING.includes(c.name)).map((c) => c.name);
    },
    inputsOf(workflowId: string, name: FakeActivityName): any[] {
      return (calls.get(workflowId) ?? []).filter((c) => c.name === name).map((c) => c.input);
    },
    /** The dunning policy campaigns for this price pin from now on. */
    setDunningPolicy(priceId: string, policy: DunningPolicy): void {
      policies.set(priceId, policy);
    },
    /** What the next retries of this invoice answer, in order; then soft declines. */
    retriesAnswer(invoiceId: string, ...outcomes: RetryInvoicePaymentResult[]): void {
      retryOutcomes.set(invoiceId, [...outcomes]);
    },
    /** What Stripe says declined the invoice's last payment (default insufficient_funds). */
    declinedWith(invoiceId: string, declineCode: string): void {
      declineCodes.set(invoiceId, declineCode);
    },
    /** What Stripe answers when asked about this invoice's payment, whatever a signal claims. */
    stripeSaysInvoice(invoiceId: string, status: InvoicePaymentFact['status'] | null): void {
      if (status === null) invoiceFacts.delete(invoiceId);
      else invoiceFacts.set(invoiceId, status);
    },
    /** Stripe holds this subscription live: a signal saying it ended is not backed. */
    stripeSaysNotCanceled(subscriptionId: string): void {
      notCanceled.add(subscriptionId);
    },
    /** Revocations and restorations by suspension, in order. */
    entitlementChangesOf(subscriptionId: string): ('revoked' | 'restored')[] {
      return entitlementChanges.filter((c) => c.subscriptionId === subscriptionId).map((c) => c.change);
    },
  };
}

export type SubscriptionFakes = ReturnType<typeof createSubscriptionFakes>;

/** A workflow worker and a Stripe-queue worker, both with the fakes, running until `stop`. */
export async function runFakeWorkers(options: {
  readonly connection: NativeConnection;
  readonly namespace: string;
  readonly taskQueue: string;
  readonly fakes: SubscriptionFakes;
  readonly workflowBundle: WorkflowBundleWithSourceMap;
  /** Omitted: the SDK's default (plain JSON, no codec). */
  readonly dataConverter?: DataConverter;
}): Promise<{ stop(): Promise<void> }> {
  const common = {
    connection: options.connection,
    namespace: options.namespace,
    ...(options.dataConverter ? { dataConverter: options.dataConverter } : {}),
  };
  // The production bundle has the tracing interceptors (they export through their sink, dropping the spans while
  // tracing is off) and the saga-metrics ones: the fakes' worker counts like a real one.
  const general = await Worker.create({ ...common, taskQueue: options.taskQueue, workflowBundle: options.workflowBundle, activities: options.fakes.general, sinks: { ...tracingSinks(), ...sagaMetricsSinks } });
  const stripe = await Worker.create({ ...common, taskQueue: `${options.taskQueue}${STRIPE_QUEUE_SUFFIX}`, activities: options.fakes.stripe });
  let release!: () => void;
  const running = runWorkersUntil([general, stripe], new Promise<void>((resolve) => (release = resolve)));
  return {
    async stop() {
      release();
      await running;
    },
  };
}

/** A sealed customer whose "ciphertext" is obviously fake: no personal data, no key needed. */
export function fakeSealedCustomer(customerId = `cust_${randomBytes(12).toString('hex')}`): SealedCustomer {
  const fakeCiphertext = (field: string) => Buffer.from(`fake-ciphertext-of-${field}`).toString('base64');
  return {
    customerId,
    region: 'eu',
    country: 'DE',
    dataKeyId: '00000000-0000-4000-8000-000000000001',
    fields: { email: fakeCiphertext('email'), name: fakeCiphertext('name') },
  };
}

export function newSubscriptionId(): string {
  return `sub_ll_${randomBytes(12).toString('hex')}`;
}

export function subscriptionInput(overrides: Partial<CreateSubscriptionInput> = {}): CreateSubscriptionInput {
  return {
    subscriptionId: newSubscriptionId(),
    customer: fakeSealedCustomer(),
    priceId: 'price_fake_monthly',
    paymentMethodId: 'pm_card_visa',
    requestedBy: 'svc-test',
    paymentWindowSeconds: 60,
    ...overrides,
  };
}

/** Polls the `subscriptionState` query until `predicate` holds (the signal it waits for is asynchronous). */
/**
 * Waits until the workflow has nothing in flight: no pending workflow task and no pending activity.
 * A query can already show the next step while the activities that step schedules have not run yet;
 * a test that counts calls from "now" on must start counting here.
 */
export async function waitForIdle(client: Client, workflowId: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { raw } = await client.workflow.getHandle(workflowId).describe();
    if (!raw.pendingWorkflowTask && (raw.pendingActivities ?? []).length === 0) return;
    if (Date.now() > deadline) throw new Error(`workflow ${workflowId} still has work in flight`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function waitForView(client: Client, workflowId: string, predicate: (view: SubscriptionView) => boolean, timeoutMs = 15_000): Promise<SubscriptionView> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const view = await client.workflow.getHandle(workflowId).query<SubscriptionView>('subscriptionState');
      if (predicate(view)) return view;
      last = view;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`subscription ${workflowId} never reached the expected state; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
