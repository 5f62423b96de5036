import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  log,
  makeContinueAsNewFunc,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  TemporalFailure,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { createAuditActivities } from '../activities/audit';
import type { createCustomerActivities, createStripeCustomerActivities } from '../activities/customers';
import type { CreateStripeSubscriptionResult, createStripeSubscriptionActivities, createSubscriptionActivities } from '../activities/subscriptions';
import type { AuditDetails } from '../src/audit/audit-types';
import type { SubscriptionFailure, SubscriptionStatus } from '../src/subscriptions/subscription-types';
import { LOCAL_STEP, stripeStep } from './activity-options';
import { Saga } from './saga';
import { stripeConfirmations } from './stripe-confirmations';
import { WORKFLOW_SEARCH_ATTRIBUTES as SA } from './search-attributes';
import {
  cancelSubscriptionUpdate,
  COMPENSATIONS,
  DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS,
  PAID_EVENT_SLACK_SECONDS,
  PAYMENT_FACTS_PATCH,
  paymentFailedSignal,
  paymentMethodUpdatedSignal,
  paymentOutcomeSignal,
  refundInvoiceUpdate,
  renewalPaidSignal,
  SAGA_STEPS,
  subscriptionCanceledSignal,
  SUBSCRIPTION_FAILURE,
  SUBSCRIPTION_ID_PATTERN,
  subscriptionStateQuery,
  type CancelSubscriptionRequest,
  type CreateSubscriptionInput,
  type PaidInvoice,
  type PaymentOutcome,
  type RefundInvoiceRequest,
  type RefundResult,
  type SagaStep,
  type SubscriptionEntityState,
  type SubscriptionEvent,
  type SubscriptionView,
  type SubscriptionWorkflowInput,
} from './subscription-contracts';
import { applyEvent, isWellFormed, PER_INVOICE_ORDER_PATCH } from './subscription-events';
import { dunningWorkflow } from './dunning';
import {
  dunningInvoicePaidSignal,
  dunningPaymentMethodUpdatedSignal,
  dunningProgressSignal,
  dunningSubscriptionCanceledSignal,
  dunningWorkflowId,
  type DunningInput,
  type DunningProgress,
  type DunningStateName,
} from './dunning-contracts';

/** The patch id of starting dunning campaigns: persisted in histories, never renamed. */
export const DUNNING_PATCH = 'subscription-dunning-campaigns';
const MAX_DUNNING_RECORDS = 20;
const FINISHED_DUNNING_STATES: readonly DunningStateName[] = ['recovered', 'canceled', 'stopped'];

type DunningWork =
  | { readonly kind: 'start'; readonly input: DunningInput }
  | { readonly kind: 'paid'; readonly invoiceId: string }
  | { readonly kind: 'method'; readonly invoiceId: string; readonly paymentMethodId: string }
  | { readonly kind: 'canceled'; readonly invoiceId: string };

function pickProgress(progress: DunningProgress): Omit<DunningProgress, 'invoiceId'> {
  return { state: progress.state, attempt: progress.attempt, nextAttemptAt: progress.nextAttemptAt, suspended: progress.suspended };
}

type LocalActivities = ReturnType<typeof createCustomerActivities> &
  ReturnType<typeof createSubscriptionActivities> &
  ReturnType<typeof createAuditActivities>;
type StripeActivities = ReturnType<typeof createStripeCustomerActivities> & ReturnType<typeof createStripeSubscriptionActivities>;

const local = proxyActivities<LocalActivities>(LOCAL_STEP);

const EMAIL = /[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}/i;
const MAX_BUFFERED_SIGNALS = 100;
const MAX_REFUND_RECORDS = 50;

/** Continue-as-new into the subscription's own workflow; only callable inside a workflow. */
const continueAsSubscription = (input: SubscriptionWorkflowInput) =>
  makeContinueAsNewFunc<typeof subscriptionWorkflow>({ workflowType: 'subscriptionWorkflow' })(input);

/**
 * Creates a subscription as a saga: store the customer (encrypted) → Stripe customer →
 * attach the payment method as default → Stripe subscription → wait for the first payment
 * when it is not settled yet (the `paymentOutcome` signal, within `paymentWindowSeconds`)
 * → provision entitlements → active. Each step's compensation is registered before the
 * step runs; on failure they run last first, each audited like each step. The failure is
 * recorded in PostgreSQL and the workflow fails with it (or with `CompensationFailed`
 * when an undo kept failing).
 *
 * Once active, the same workflow id continues-as-new into {@link subscriptionWorkflow};
 * the result (following that chain) is the subscription's final view when it ends.
 */
export async function createSubscriptionWorkflow(input: CreateSubscriptionInput): Promise<SubscriptionView> {
  validateCreateInput(input);
  const { workflowId } = workflowInfo();
  const stripe = proxyActivities<StripeActivities>(stripeStep());
  const stripeSays = stripeConfirmations();
  const key = (step: string) => `${workflowId}:${step}`;
  const { subscriptionId, priceId, paymentMethodId } = input;
  const customerId = input.customer.customerId;

  let status: SubscriptionStatus = 'pending';
  let sagaStep: SagaStep = SAGA_STEPS[0];
  let created: CreateStripeSubscriptionResult | null = null;
  let failure: SubscriptionFailure | null = null;
  const outcomes: PaymentOutcome[] = [];
  const pendingEvents: SubscriptionEvent[] = [];

  const view = (): SubscriptionView => ({
    subscriptionId,
    customerId,
    priceId,
    status,
    sagaStep,
    stripeSubscriptionId: created?.stripeSubscriptionId ?? null,
    paymentMethodId,
    paymentIntentId: status === 'pending' ? (created?.paymentIntentId ?? null) : null,
    cancelAtPeriodEnd: false,
    failedInvoiceIds: [],
    dunning: [],
    failure,
  });
  const publish = () =>
    upsertSearchAttributes([
      { key: SA.CustomerId, value: customerId },
      { key: SA.SubscriptionId, value: subscriptionId },
      { key: SA.BillingStatus, value: status },
      { key: SA.SagaStep, value: sagaStep },
    ]);
  const record = (extra: { failure?: SubscriptionFailure }) =>
    local.recordSubscription({ subscriptionId, customerId, priceId, status, sagaStep, stripeSubscriptionId: created?.stripeSubscriptionId ?? null, ...extra });

  setHandler(subscriptionStateQuery, view);
  setHandler(paymentOutcomeSignal, (outcome) => {
    if (isPaymentOutcome(outcome) && outcomes.length < MAX_BUFFERED_SIGNALS) outcomes.push(outcome);
    else log.warn('payment outcome ignored: malformed or too many');
  });
  // Webhook events of the live subscription may overtake activation: keep them for the subscription's workflow.
  const keep = (event: SubscriptionEvent) => {
    if (pendingEvents.length < MAX_BUFFERED_SIGNALS) pendingEvents.push(event);
    else log.warn('subscription event dropped: too many before activation', { kind: event.kind });
  };
  setHandler(renewalPaidSignal, (e) => keep({ ...e, kind: 'renewalPaid' }));
  setHandler(paymentFailedSignal, (e) => keep({ ...e, kind: 'paymentFailed' }));
  setHandler(subscriptionCanceledSignal, (e) => keep({ ...e, kind: 'subscriptionCanceled' }));
  setHandler(paymentMethodUpdatedSignal, (e) => keep({ ...e, kind: 'paymentMethodUpdated' }));
  const notActiveYet = (): never => {
    throw ApplicationFailure.create({
      type: SUBSCRIPTION_FAILURE.notActive,
      nonRetryable: true,
      message: `subscription ${subscriptionId} is ${status}, not active`,
    });
  };
  setHandler(cancelSubscriptionUpdate, async (_: CancelSubscriptionRequest) => notActiveYet(), { validator: (_: CancelSubscriptionRequest) => notActiveYet() });
  setHandler(refundInvoiceUpdate, async (_: RefundInvoiceRequest) => notActiveYet(), { validator: (_: RefundInvoiceRequest) => notActiveYet() });

  const audit = (name: string, action: 'saga.step' | 'saga.compensation') =>
    local.recordAudit({
      idempotencyKey: `${workflowId}:${action}:${name}`,
      actor: `workflow:${workflowId}`,
      action,
      subjectType: 'subscription',
      subjectId: subscriptionId,
      details: { step: name, customerId, requestedBy: input.requestedBy },
    });
  const saga = new Saga();
  const undo = (name: string, run: () => Promise<unknown>) =>
    saga.onRollback(name, async () => {
      await run();
      await audit(name, 'saga.compensation');
    });
  const step = async <T>(name: (typeof SAGA_STEPS)[number], run: () => Promise<T>): Promise<T> => {
    sagaStep = name;
    publish();
    const result = await run();
    await audit(name, 'saga.step');
    return result;
  };

  /** The first payment's outcome: the settled answer of step 4, or the webhook's within the window, as Stripe confirms it. */
  const awaitFirstPayment = async (subscription: CreateStripeSubscriptionResult): Promise<PaymentOutcome | null> => {
    if (subscription.firstPayment === 'paid') return null;
    if (subscription.firstPayment === 'failed') throw firstPaymentFailed(subscription.latestInvoiceId, subscription.declineCode ?? undefined);
    await record({});
    const outcomeOf = () => decidedOutcome(outcomes, subscription.latestInvoiceId);
    const deadline = Date.now() + input.paymentWindowSeconds * 1000;
    const expired = () =>
      ApplicationFailure.create({
        type: SUBSCRIPTION_FAILURE.paymentWindowExpired,
        nonRetryable: true,
        message: `first payment not completed within ${input.paymentWindowSeconds} seconds`,
        details: [{ invoiceId: subscription.latestInvoiceId }],
      });
    if (!(await condition(() => outcomeOf() !== undefined, input.paymentWindowSeconds * 1000))) throw expired();
    if (!patched(PAYMENT_FACTS_PATCH)) {
      const outcome = outcomeOf()!;
      if (outcome.outcome === 'failed') throw firstPaymentFailed(outcome.invoiceId, outcome.reason);
      return outcome;
    }
    // The signal only says where to look: Stripe's answer decides, and a claim it does not back is dropped.
    for (;;) {
      const claimed = outcomeOf()!;
      const fact = await stripeSays.invoicePayment({ subscriptionId, invoiceId: claimed.invoiceId, claimed: claimed.outcome });
      if (fact.status === 'paid') {
        return {
          ...claimed,
          outcome: 'paid',
          eventCreated: fact.paidAt === null ? claimed.eventCreated : Math.min(claimed.eventCreated, fact.paidAt + PAID_EVENT_SLACK_SECONDS),
          ...(fact.amountPaid === null ? {} : { amountPaid: fact.amountPaid }),
          ...(fact.currency === null ? {} : { currency: fact.currency }),
        };
      }
      if (fact.status === 'failed' && claimed.outcome === 'failed') throw firstPaymentFailed(claimed.invoiceId, fact.declineCode ?? claimed.reason);
      log.warn('first payment outcome not confirmed by Stripe: ignored', { claimed: claimed.outcome, stripe: fact.status });
      outcomes.splice(outcomes.indexOf(claimed), 1);
      const remaining = deadline - Date.now();
      if (remaining <= 0 || !(await condition(() => outcomeOf() !== undefined, remaining))) throw expired();
    }
  };

  publish();
  await record({});
  let firstPayment: PaymentOutcome | null;
  try {
    undo(COMPENSATIONS['store-customer'], () => local.shredCustomer({ customerId }));
    await step('store-customer', () => local.storeCustomer({ customer: input.customer }));

    undo(COMPENSATIONS['create-stripe-customer'], () =>
      stripe.deleteStripeCustomer({ customerId, idempotencyKey: key(COMPENSATIONS['create-stripe-customer']) }),
    );
    await step('create-stripe-customer', () => stripe.createStripeCustomer({ customerId, idempotencyKey: key('create-stripe-customer') }));

    undo(COMPENSATIONS['attach-payment-method'], () =>
      stripe.detachPaymentMethod({ customerId, paymentMethodId, idempotencyKey: key(COMPENSATIONS['attach-payment-method']) }),
    );
    await step('attach-payment-method', () => stripe.attachPaymentMethod({ customerId, paymentMethodId, idempotencyKey: key('attach-payment-method') }));

    undo(COMPENSATIONS['create-stripe-subscription'], () =>
      stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey: key(COMPENSATIONS['create-stripe-subscription']) }),
    );
    created = await step('create-stripe-subscription', () =>
      stripe.createStripeSubscription({
        subscriptionId,
        customerId,
        priceId,
        ...(input.trialDays === undefined ? {} : { trialDays: input.trialDays }),
        ...(input.metadata === undefined ? {} : { metadata: input.metadata }),
        ...(input.sealedMetadata === undefined ? {} : { sealedMetadata: input.sealedMetadata }),
        idempotencyKey: key('create-stripe-subscription'),
      }),
    );
    const subscription = created;

    firstPayment = await step('await-first-payment', () => awaitFirstPayment(subscription));

    undo(COMPENSATIONS['provision-entitlements'], () => local.revokeEntitlements({ subscriptionId }));
    await step('provision-entitlements', () => local.provisionEntitlements({ subscriptionId, customerId, priceId }));

    await step('mark-active', () => local.markSubscriptionActive({ subscriptionId }));
  } catch (err) {
    const cause = failureOf(err);
    failure = cause;
    let compensationError: unknown;
    // Undo even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(async () => {
      try {
        await saga.compensate();
      } catch (compensation) {
        compensationError = compensation;
        failure = { type: 'CompensationFailed', reason: `${cause.type} at ${sagaStep}, then ${failureOf(compensation).reason}` };
      }
      status = 'failed';
      publish();
      await record({ failure: failure! });
    });
    throw compensationError ?? err;
  }

  status = 'active';
  sagaStep = 'completed';
  publish();
  const paidInvoices: PaidInvoice[] = created.latestInvoiceId
    ? [
        {
          invoiceId: created.latestInvoiceId,
          amountPaid: firstPayment?.amountPaid ?? (created.firstPayment === 'paid' ? created.amountDue : null),
          currency: firstPayment?.currency ?? created.currency,
          refunded: 0,
        },
      ]
    : [];
  const entity: SubscriptionEntityState = {
    subscriptionId,
    customerId,
    priceId,
    stripeSubscriptionId: created.stripeSubscriptionId,
    paymentMethodId,
    status: 'active',
    statusSince: firstPayment?.eventCreated ?? 0,
    cancelAtPeriodEnd: false,
    lastEventCreated: {},
    recentEventIds: firstPayment?.eventId ? [firstPayment.eventId] : [],
    paidInvoices,
    failedInvoiceIds: [],
    dunning: [],
    refunds: [],
    refundCount: 0,
    pendingEvents,
  };
  await condition(allHandlersFinished);
  return continueAsSubscription({
    state: entity,
    continueAsNewAfterEvents: input.continueAsNewAfterEvents ?? DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS,
  });
}

/**
 * The subscription after activation, for as long as it lives: applies webhook events
 * (renewal paid, payment failed, canceled, payment method updated; each at most once and
 * never an older one over a newer), answers `subscriptionState`, cancels and refunds on
 * request (updates, validated first), keeps PostgreSQL in step, and continues-as-new
 * every `continueAsNewAfterEvents` events or when Temporal suggests it. It ends when the
 * subscription is canceled, revoking its entitlements.
 *
 * Failed payments are kept in `failedInvoiceIds` and make the subscription past_due:
 * that list is what dunning (a later issue) takes over.
 */
export async function subscriptionWorkflow(input: SubscriptionWorkflowInput): Promise<SubscriptionView> {
  const { workflowId } = workflowInfo();
  const stripe = proxyActivities<StripeActivities>(stripeStep());
  const stripeSays = stripeConfirmations();
  let state: SubscriptionEntityState = { ...input.state, pendingEvents: [] };
  let eventsThisRun = 0;
  // PostgreSQL holds the state as of `persisted`; every change bumps `version`.
  let version = 0;
  let persisted = 0;
  let immediateCancels = 0;
  let publishedStatus: string | undefined;
  const refundsInFlight = new Map<string, Promise<RefundResult>>();

  const publish = () => {
    if (publishedStatus === state.status) return;
    upsertSearchAttributes([
      { key: SA.BillingStatus, value: state.status },
      { key: SA.SagaStep, value: 'completed' },
    ]);
    publishedStatus = state.status;
  };
  const change = (next: SubscriptionEntityState) => {
    state = next;
    version += 1;
    publish();
  };
  // Dunning: what the main loop still has to do for the campaigns (start one, tell them something).
  const dunningWork: DunningWork[] = [];
  const campaigns = () => state.dunning ?? [];
  const runningCampaigns = () => campaigns().filter((c) => !FINISHED_DUNNING_STATES.includes(c.state));
  const planDunning = (event: SubscriptionEvent, before: SubscriptionEntityState) => {
    if (event.kind === 'paymentFailed' && !before.failedInvoiceIds.includes(event.invoiceId) && !campaigns().some((c) => c.invoiceId === event.invoiceId)) {
      const started: DunningProgress = { invoiceId: event.invoiceId, state: 'retrying', attempt: 0, nextAttemptAt: null, suspended: false };
      state = { ...state, dunning: [...campaigns(), started].slice(-MAX_DUNNING_RECORDS) };
      dunningWork.push({ kind: 'start', input: { subscriptionId: state.subscriptionId, customerId: state.customerId, priceId: state.priceId, invoiceId: event.invoiceId, failedAt: event.eventCreated, declineCode: event.declineCode ?? null } });
    } else if (event.kind === 'renewalPaid' && runningCampaigns().some((c) => c.invoiceId === event.invoiceId)) {
      dunningWork.push({ kind: 'paid', invoiceId: event.invoiceId });
    } else if (event.kind === 'paymentMethodUpdated') {
      for (const c of runningCampaigns()) dunningWork.push({ kind: 'method', invoiceId: c.invoiceId, paymentMethodId: event.paymentMethodId });
    } else if (event.kind === 'subscriptionCanceled') {
      for (const c of runningCampaigns()) dunningWork.push({ kind: 'canceled', invoiceId: c.invoiceId });
    }
  };
  const receive = (event: SubscriptionEvent) => {
    const before = state;
    const { state: next, verdict } = applyEvent(state, event, { perInvoiceOrder: patched(PER_INVOICE_ORDER_PATCH) });
    if (verdict !== 'applied') {
      log.info('subscription event not applied', { kind: event.kind, verdict });
      return;
    }
    change(next);
    if (patched(DUNNING_PATCH)) planDunning(event, before);
  };
  const audit = (action: string, name: string, actor: string | undefined, details: AuditDetails) =>
    local.recordAudit({
      idempotencyKey: `${workflowId}:${action}:${name}`,
      actor: actor ?? `workflow:${workflowId}`,
      action,
      subjectType: 'subscription',
      subjectId: state.subscriptionId,
      details,
    });

  // Events wait for Stripe's word before they are applied (see PAYMENT_FACTS_PATCH), in the order they
  // arrived: one waiting for Stripe holds back those behind it, so the ordering rules see what they always saw.
  let confirming = 0;
  let eventQueue: Promise<void> = Promise.resolve();
  const needsStripe = (event: SubscriptionEvent) =>
    (event.kind === 'renewalPaid' || event.kind === 'paymentFailed' || event.kind === 'subscriptionCanceled') &&
    isWellFormed(event) &&
    state.status !== 'canceled' &&
    !state.recentEventIds.includes(event.eventId);
  /** The event as Stripe confirms it (its amounts and time bounded by Stripe's), or null when Stripe does not. */
  const confirmed = async (event: SubscriptionEvent): Promise<SubscriptionEvent | null> => {
    if (event.kind === 'renewalPaid') {
      const fact = await stripeSays.invoicePayment({ subscriptionId: state.subscriptionId, invoiceId: event.invoiceId, claimed: 'paid' });
      if (fact.status !== 'paid') return null;
      return {
        ...event,
        amountPaid: fact.amountPaid ?? event.amountPaid,
        currency: fact.currency ?? event.currency,
        eventCreated: fact.paidAt === null ? event.eventCreated : Math.min(event.eventCreated, fact.paidAt + PAID_EVENT_SLACK_SECONDS),
      };
    }
    if (event.kind === 'paymentFailed') {
      // A failure starts a campaign that suspends and may cancel: only for an unpaid invoice of this subscription.
      const fact = await stripeSays.invoicePayment({ subscriptionId: state.subscriptionId, invoiceId: event.invoiceId, claimed: 'failed' });
      return fact.status === 'failed' || fact.status === 'pending' ? event : null;
    }
    if (event.kind === 'subscriptionCanceled') return (await stripeSays.canceled(state.subscriptionId)) ? event : null;
    return event;
  };
  const deliver = (event: SubscriptionEvent): Promise<void> | void => {
    if (!patched(PAYMENT_FACTS_PATCH)) return receive(event);
    confirming += 1;
    eventQueue = eventQueue.then(async () => {
      try {
        const fact = needsStripe(event) ? await confirmed(event) : event;
        if (fact) receive(fact);
        else log.warn('subscription event not confirmed by Stripe: ignored', { kind: event.kind });
      } finally {
        confirming -= 1;
      }
    });
    return eventQueue;
  };

  setHandler(subscriptionStateQuery, () => entityView(state));
  const onEvent = (event: SubscriptionEvent) => {
    eventsThisRun += 1;
    return deliver(event);
  };
  setHandler(renewalPaidSignal, (e) => onEvent({ ...e, kind: 'renewalPaid' }));
  setHandler(paymentFailedSignal, (e) => onEvent({ ...e, kind: 'paymentFailed' }));
  setHandler(subscriptionCanceledSignal, (e) => onEvent({ ...e, kind: 'subscriptionCanceled' }));
  setHandler(paymentMethodUpdatedSignal, (e) => onEvent({ ...e, kind: 'paymentMethodUpdated' }));
  // The first invoice's outcome, redelivered or late: the saga settled it before activation. Commands nothing, so replay-safe.
  setHandler(paymentOutcomeSignal, () => log.info('first payment outcome after activation: already settled'));
  setHandler(dunningProgressSignal, async (progress) => {
    if (!isObject(progress) || !campaigns().some((c) => c.invoiceId === progress.invoiceId)) return;
    // A campaign that says it canceled the subscription is believed once Stripe says so too.
    if (progress.state === 'canceled' && state.status !== 'canceled' && patched(PAYMENT_FACTS_PATCH)) {
      confirming += 1;
      try {
        if (!(await stripeSays.canceled(state.subscriptionId))) {
          log.warn('dunning progress not confirmed by Stripe: ignored', { state: progress.state });
          return;
        }
      } finally {
        confirming -= 1;
      }
    }
    const dunning = campaigns().map((c) => (c.invoiceId === progress.invoiceId ? { ...c, ...pickProgress(progress) } : c));
    // A campaign's final action decides the subscription's status; a recovery is the invoice.paid webhook's to tell.
    if (progress.state === 'canceled' && state.status !== 'canceled') {
      change({ ...state, dunning, status: 'canceled', statusSince: Math.max(state.statusSince, Math.floor(Date.now() / 1000)) });
      // One campaign ended the subscription: the others have nothing left to recover.
      for (const c of runningCampaigns()) if (c.invoiceId !== progress.invoiceId) dunningWork.push({ kind: 'canceled', invoiceId: c.invoiceId });
    } else if (progress.state === 'unpaid' && state.status === 'past_due') {
      change({ ...state, dunning, status: 'unpaid', statusSince: Math.max(state.statusSince, Math.floor(Date.now() / 1000)) });
    } else {
      change({ ...state, dunning });
    }
  });

  setHandler(
    cancelSubscriptionUpdate,
    async (request: CancelSubscriptionRequest) => {
      eventsThisRun += 1;
      if (request.atPeriodEnd && state.cancelAtPeriodEnd) return entityView(state);
      const name = request.atPeriodEnd ? 'cancel-at-period-end' : 'cancel-immediately';
      if (!request.atPeriodEnd) immediateCancels += 1;
      try {
        const result = await stripe.cancelStripeSubscription({
          subscriptionId: state.subscriptionId,
          atPeriodEnd: request.atPeriodEnd,
          idempotencyKey: `${workflowId}:${name}`,
        });
        change(
          request.atPeriodEnd
            ? { ...state, cancelAtPeriodEnd: true }
            : { ...state, status: 'canceled', statusSince: Math.max(state.statusSince, Math.floor(Date.now() / 1000)) },
        );
        // Ended now: its campaigns have nothing left to recover.
        if (!request.atPeriodEnd && runningCampaigns().length > 0 && patched(DUNNING_PATCH)) {
          for (const c of runningCampaigns()) dunningWork.push({ kind: 'canceled', invoiceId: c.invoiceId });
        }
        await audit('subscription.cancel', name, request.requestedBy, { atPeriodEnd: request.atPeriodEnd, outcome: result.outcome, voidedInvoiceId: result.voidedInvoiceId });
      } finally {
        if (!request.atPeriodEnd) immediateCancels -= 1;
      }
      return entityView(state);
    },
    {
      validator: (request: CancelSubscriptionRequest) => {
        if (!isObject(request) || typeof request.atPeriodEnd !== 'boolean') throw invalid(SUBSCRIPTION_FAILURE.invalidCancel, 'atPeriodEnd must be true or false');
        if (request.requestedBy !== undefined && !isActor(request.requestedBy)) throw invalid(SUBSCRIPTION_FAILURE.invalidCancel, 'requestedBy must be a service identity');
        if (state.status === 'canceled' || immediateCancels > 0) {
          throw ApplicationFailure.create({ type: SUBSCRIPTION_FAILURE.alreadyCanceled, nonRetryable: true, message: `subscription ${state.subscriptionId} is already canceled` });
        }
      },
    },
  );

  const refund = async (request: RefundInvoiceRequest, requestId: string): Promise<RefundResult> => {
    const result = await stripe.refundInvoice({
      subscriptionId: state.subscriptionId,
      invoiceId: request.invoiceId,
      ...(request.amount === undefined ? {} : { amount: request.amount }),
      idempotencyKey: `${workflowId}:refund:${requestId}`,
    });
    change({
      ...state,
      refunds: [...state.refunds, { ...result, requestId }].slice(-MAX_REFUND_RECORDS),
      paidInvoices: state.paidInvoices.map((p) => (p.invoiceId === result.invoiceId ? { ...p, refunded: p.refunded + result.amount } : p)),
    });
    await audit('subscription.refund', requestId, request.requestedBy, {
      invoiceId: result.invoiceId,
      refundId: result.refundId,
      amount: result.amount,
      currency: result.currency,
    });
    return result;
  };
  setHandler(
    refundInvoiceUpdate,
    async (request: RefundInvoiceRequest) => {
      eventsThisRun += 1;
      const done = request.requestId === undefined ? undefined : state.refunds.find((r) => r.requestId === request.requestId);
      if (done) return refundResultOf(done);
      const requestId = request.requestId ?? `refund-${state.refundCount + 1}`;
      const running = refundsInFlight.get(requestId);
      if (running) return running;
      change({ ...state, refundCount: state.refundCount + 1 });
      const work = refund(request, requestId).finally(() => refundsInFlight.delete(requestId));
      refundsInFlight.set(requestId, work);
      return work;
    },
    { validator: (request: RefundInvoiceRequest) => validateRefund(state, request) },
  );

  for (const event of input.state.pendingEvents) void deliver(event);
  publish();

  const continueAsNewDue = () => eventsThisRun >= input.continueAsNewAfterEvents || workflowInfo().continueAsNewSuggested;
  /** Starts campaigns and passes them what they wait for; a campaign that has ended is past telling. */
  const doDunningWork = async (work: DunningWork) => {
    if (work.kind === 'start') {
      try {
        await startChild(dunningWorkflow, {
          workflowId: dunningWorkflowId(work.input.subscriptionId, work.input.invoiceId),
          args: [work.input],
          // A campaign outlives this run (continue-as-new) and even the subscription's workflow.
          parentClosePolicy: ParentClosePolicy.ABANDON,
        });
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
      return;
    }
    const campaign = getExternalWorkflowHandle(dunningWorkflowId(state.subscriptionId, work.invoiceId));
    try {
      if (work.kind === 'paid') await campaign.signal(dunningInvoicePaidSignal, {});
      else if (work.kind === 'method') await campaign.signal(dunningPaymentMethodUpdatedSignal, { paymentMethodId: work.paymentMethodId });
      else await campaign.signal(dunningSubscriptionCanceledSignal, {});
    } catch {
      log.info('dunning campaign already ended', { invoiceId: work.invoiceId, kind: work.kind });
    }
  };
  const persist = () =>
    local.recordSubscription({
      subscriptionId: state.subscriptionId,
      customerId: state.customerId,
      priceId: state.priceId,
      status: state.status,
      sagaStep: 'completed',
      stripeSubscriptionId: state.stripeSubscriptionId,
      cancelAtPeriodEnd: state.cancelAtPeriodEnd,
    });

  // Handlers change `state` while this loop awaits: read it through a function, never narrowed.
  const ended = () => state.status === 'canceled';
  for (;;) {
    await condition(() => ended() || persisted !== version || dunningWork.length > 0 || continueAsNewDue());
    if (dunningWork.length > 0) {
      await doDunningWork(dunningWork.shift()!);
      continue;
    }
    if (ended()) break;
    if (persisted !== version) {
      const target = version;
      await persist();
      persisted = target;
      continue;
    }
    await condition(() => allHandlersFinished() && confirming === 0);
    if (ended() || persisted !== version || dunningWork.length > 0) continue;
    return continueAsSubscription({ ...input, state });
  }

  await condition(allHandlersFinished);
  await local.revokeEntitlements({ subscriptionId: state.subscriptionId });
  await persist();
  await audit('subscription.ended', 'canceled', undefined, { stripeSubscriptionId: state.stripeSubscriptionId });
  return entityView(state);
}

function entityView(state: SubscriptionEntityState): SubscriptionView {
  return {
    subscriptionId: state.subscriptionId,
    customerId: state.customerId,
    priceId: state.priceId,
    status: state.status,
    sagaStep: 'completed',
    stripeSubscriptionId: state.stripeSubscriptionId,
    paymentMethodId: state.paymentMethodId,
    paymentIntentId: null,
    cancelAtPeriodEnd: state.cancelAtPeriodEnd,
    failedInvoiceIds: state.failedInvoiceIds,
    dunning: state.dunning ?? [],
    failure: null,
  };
}

function refundResultOf(record: RefundResult & { requestId: string }): RefundResult {
  return { refundId: record.refundId, invoiceId: record.invoiceId, amount: record.amount, currency: record.currency, status: record.status };
}

function validateRefund(state: SubscriptionEntityState, request: RefundInvoiceRequest): void {
  if (!isObject(request) || typeof request.invoiceId !== 'string' || !/^in_[A-Za-z0-9_]{1,250}$/.test(request.invoiceId)) {
    throw invalid(SUBSCRIPTION_FAILURE.invalidRefund, 'invoiceId must be a Stripe invoice id (in_…)');
  }
  if (request.amount !== undefined && !(Number.isSafeInteger(request.amount) && request.amount > 0)) {
    throw invalid(SUBSCRIPTION_FAILURE.invalidRefund, 'amount must be a positive integer of minor units');
  }
  if (request.requestId !== undefined && !(typeof request.requestId === 'string' && /^[A-Za-z0-9._:-]{1,100}$/.test(request.requestId))) {
    throw invalid(SUBSCRIPTION_FAILURE.invalidRefund, 'requestId must be 1 to 100 letters, digits or . _ : -');
  }
  if (request.requestedBy !== undefined && !isActor(request.requestedBy)) throw invalid(SUBSCRIPTION_FAILURE.invalidRefund, 'requestedBy must be a service identity');
  if (request.requestId !== undefined && state.refunds.some((r) => r.requestId === request.requestId)) return;
  if (state.status === 'canceled') {
    throw ApplicationFailure.create({ type: SUBSCRIPTION_FAILURE.alreadyCanceled, nonRetryable: true, message: `subscription ${state.subscriptionId} has ended` });
  }
  const paid = state.paidInvoices.find((p) => p.invoiceId === request.invoiceId);
  if (!paid) {
    throw ApplicationFailure.create({
      type: SUBSCRIPTION_FAILURE.invoiceNotRefundable,
      nonRetryable: true,
      message: `invoice ${request.invoiceId} is not a paid invoice of subscription ${state.subscriptionId}`,
    });
  }
  if (paid.amountPaid !== null) {
    const remaining = paid.amountPaid - paid.refunded;
    if (remaining <= 0 || (request.amount ?? remaining) > remaining) {
      throw ApplicationFailure.create({
        type: SUBSCRIPTION_FAILURE.refundExceedsPayment,
        nonRetryable: true,
        message: `at most ${remaining} (minor units of ${paid.currency ?? 'the invoice currency'}) of invoice ${paid.invoiceId} remain refundable`,
      });
    }
  }
}

function validateCreateInput(input: CreateSubscriptionInput): void {
  const problems: string[] = [];
  if (!isObject(input)) throw invalid(SUBSCRIPTION_FAILURE.invalidInput, 'input must be an object');
  if (typeof input.subscriptionId !== 'string' || !SUBSCRIPTION_ID_PATTERN.test(input.subscriptionId)) problems.push('subscriptionId must be sub_ll_ and 20 to 40 lower-case letters or digits');
  if (!isObject(input.customer) || typeof input.customer.customerId !== 'string') problems.push('customer must be a sealed customer');
  if (typeof input.priceId !== 'string' || input.priceId === '') problems.push('priceId must be a Stripe price id');
  if (typeof input.paymentMethodId !== 'string' || !input.paymentMethodId.startsWith('pm_')) problems.push('paymentMethodId must be a Stripe payment method id (pm_…)');
  if (input.trialDays !== undefined && !(Number.isInteger(input.trialDays) && input.trialDays >= 1 && input.trialDays <= 730)) problems.push('trialDays must be a whole number of days from 1 to 730');
  if (!(typeof input.paymentWindowSeconds === 'number' && Number.isFinite(input.paymentWindowSeconds) && input.paymentWindowSeconds > 0)) problems.push('paymentWindowSeconds must be a positive number');
  if (input.continueAsNewAfterEvents !== undefined && !(Number.isInteger(input.continueAsNewAfterEvents) && input.continueAsNewAfterEvents >= 1)) {
    problems.push('continueAsNewAfterEvents must be a positive whole number');
  }
  if (!isActor(input.requestedBy)) problems.push('requestedBy must be a service identity');
  if (problems.length > 0) throw invalid(SUBSCRIPTION_FAILURE.invalidInput, problems.join('; '));
}

/** The outcome that decides the first payment: a payment received beats any failure reported for it. */
function decidedOutcome(outcomes: readonly PaymentOutcome[], invoiceId: string | null): PaymentOutcome | undefined {
  const relevant = outcomes.filter((o) => invoiceId === null || o.invoiceId === invoiceId);
  return relevant.find((o) => o.outcome === 'paid') ?? relevant.find((o) => o.outcome === 'failed');
}

function isPaymentOutcome(value: PaymentOutcome): boolean {
  return (
    isObject(value) &&
    (value.outcome === 'paid' || value.outcome === 'failed') &&
    typeof value.invoiceId === 'string' &&
    value.invoiceId !== '' &&
    typeof value.eventCreated === 'number' &&
    Number.isFinite(value.eventCreated)
  );
}

function firstPaymentFailed(invoiceId: string | null, reason: string | undefined): ApplicationFailure {
  const code = typeof reason === 'string' ? redact(reason) : null;
  return ApplicationFailure.create({
    type: SUBSCRIPTION_FAILURE.firstPaymentFailed,
    nonRetryable: true,
    message: `first payment failed${code ? ` (${code})` : ''}`,
    details: [{ invoiceId, reason: code }],
  });
}

/** A failure as the subscription records it: its `type`, and its message without anything email-shaped. */
function failureOf(err: unknown): SubscriptionFailure {
  const cause = err instanceof ActivityFailure && err.cause ? err.cause : err;
  if (cause instanceof ApplicationFailure) return { type: cause.type ?? 'ApplicationFailure', reason: redact(cause.message) };
  if (cause instanceof TimeoutFailure) return { type: 'ActivityTimeout', reason: redact(cause.message) };
  if (cause instanceof TemporalFailure) return { type: cause.name, reason: redact(cause.message) };
  return { type: 'UnexpectedError', reason: 'unexpected error' };
}

function redact(text: string): string {
  return text.replace(new RegExp(EMAIL.source, 'gi'), '[redacted]').slice(0, 300);
}

function invalid(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, nonRetryable: true, message });
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null;
}

function isActor(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= 200 && !EMAIL.test(value);
}
