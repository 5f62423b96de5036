import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createAuditActivities } from '../activities/audit';
import type { createDunningActivities, createStripeDunningActivities } from '../activities/dunning';
import type { createStripeSubscriptionActivities } from '../activities/subscriptions';
import type { AuditDetails } from '../src/audit/audit-types';
import { LOCAL_STEP, stripeStep } from './activity-options';
import {
  DUNNING_FAILURE,
  dunningInvoicePaidSignal,
  dunningPaymentMethodUpdatedSignal,
  dunningProgressSignal,
  dunningStateQuery,
  dunningSubscriptionCanceledSignal,
  type DunningAttemptRecord,
  type DunningInput,
  type DunningPolicy,
  type DunningStateName,
  type DunningView,
} from './dunning-contracts';
import { Saga } from './saga';
import { stripeConfirmations } from './stripe-confirmations';
import { WORKFLOW_SEARCH_ATTRIBUTES as SA } from './search-attributes';
import { PAYMENT_FACTS_PATCH, SUBSCRIPTION_ID_PATTERN, subscriptionWorkflowId } from './subscription-contracts';

type LocalActivities = ReturnType<typeof createDunningActivities> & ReturnType<typeof createAuditActivities>;
type StripeActivities = ReturnType<typeof createStripeDunningActivities> & ReturnType<typeof createStripeSubscriptionActivities>;

const local = proxyActivities<LocalActivities>(LOCAL_STEP);

/**
 * One dunning campaign: recovers one failed invoice of one subscription, on the policy
 * pinned when it started (its first activity's result, so it is in the history).
 *
 * Each retry: notify the customer (outbox), wait on a durable timer until the policy's
 * next offset, or less when a signal comes first (a new payment method retries at once;
 * the invoice paid through the webhook path, or the subscription canceled, ends the
 * campaign), then retry the payment at Stripe (`invoices.pay`, idempotency key = workflow
 * id + attempt) and classify: paid, a hard decline (no more retries), or soft.
 *
 * Escalation is compensable: after the grace period the subscription's entitlements are
 * suspended (undo: restore them), and when the retries are exhausted or a decline is hard,
 * the final action applies (cancel the subscription, mark it unpaid, or leave it past
 * due). A campaign that did not cancel keeps waiting for the invoice to be paid, and
 * undoes its escalation when it is. Every step is audited; the subscription's workflow
 * hears of every change (`dunningProgress`).
 */
export async function dunningWorkflow(input: DunningInput): Promise<DunningView> {
  validateInput(input);
  const { workflowId } = workflowInfo();
  const stripe = proxyActivities<StripeActivities>(stripeStep());
  const stripeSays = stripeConfirmations();
  const { subscriptionId, invoiceId } = input;

  let policy: DunningPolicy | null = null;
  let state: DunningStateName = 'retrying';
  let attempt = 0;
  let nextAttemptAt: number | null = null;
  let suspended = false;
  const history: DunningAttemptRecord[] = [];
  let paid = false;
  let canceled = false;
  let methodUpdated = false;

  const view = (): DunningView => ({ subscriptionId, invoiceId, policy, state, attempt, nextAttemptAt, suspended, history });
  setHandler(dunningStateQuery, view);
  setHandler(dunningInvoicePaidSignal, () => void (paid = true));
  setHandler(dunningSubscriptionCanceledSignal, () => void (canceled = true));
  setHandler(dunningPaymentMethodUpdatedSignal, () => void (methodUpdated = true));

  const publish = async () => {
    upsertSearchAttributes([
      { key: SA.SubscriptionId, value: subscriptionId },
      { key: SA.CustomerId, value: input.customerId },
      { key: SA.DunningAttempt, value: attempt },
      { key: SA.DunningState, value: state },
    ]);
    try {
      await getExternalWorkflowHandle(subscriptionWorkflowId(subscriptionId)).signal(dunningProgressSignal, { invoiceId, state, attempt, nextAttemptAt, suspended });
    } catch {
      // The subscription's workflow has ended: nobody left to tell.
      log.info('subscription workflow gone; progress not delivered', { state });
    }
  };
  const audit = (action: string, name: string, details: AuditDetails = {}) =>
    local.recordAudit({
      idempotencyKey: `${workflowId}:${action}:${name}`,
      actor: `workflow:${workflowId}`,
      action,
      subjectType: 'subscription',
      subjectId: subscriptionId,
      details: { invoiceId, policy: policy?.name ?? null, attempt, ...details },
    });

  const saga = new Saga();
  const suspend = async () => {
    if (suspended) return;
    saga.onRollback('restore-entitlements', async () => {
      await local.restoreEntitlements({ subscriptionId, invoiceId, customerId: input.customerId, priceId: input.priceId });
      suspended = false;
      await audit('dunning.restore', 'entitlements');
    });
    await local.suspendEntitlements({ subscriptionId, invoiceId });
    suspended = true;
    state = 'suspended';
    await audit('dunning.suspend', 'entitlements');
    await publish();
  };

  // Whoever can start a workflow could start a campaign that suspends and cancels a paying subscription: Stripe first.
  let paidAlready = false;
  if (patched(PAYMENT_FACTS_PATCH)) {
    const fact = await stripeSays.invoicePayment({ subscriptionId, invoiceId, claimed: 'failed' });
    if (fact.status === 'not_ours') throw invalid(DUNNING_FAILURE.invoiceNotOfSubscription, `invoice ${invoiceId} is not an invoice of subscription ${subscriptionId} at Stripe`);
    paidAlready = fact.status === 'paid';
  }

  policy = await local.resolveDunningPolicy({ priceId: input.priceId });
  validatePolicy(policy);
  const pinned = policy;
  // Offsets count from the failure; an event delivered late never schedules into the past twice.
  const origin = Math.min(input.failedAt * 1000, Date.now());
  const graceAt = origin + pinned.gracePeriodSeconds * 1000;
  const isHard = (code: string | null | undefined) => typeof code === 'string' && pinned.hardDeclineCodes.includes(code);
  // The webhook rarely says why the payment failed: ask Stripe, so a stolen card is not retried for weeks.
  let declineCode = input.declineCode ?? null;
  if (declineCode === null) {
    try {
      declineCode = (await stripe.lastDeclineCode({ invoiceId })).declineCode;
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      log.warn('decline code unknown; treating the failure as soft', { invoiceId });
    }
  }

  await audit('dunning.started', 'campaign', { declineCode, finalAction: pinned.finalAction });
  await publish();

  // Told the invoice was paid, or the subscription ended: believed once Stripe says the same (PAYMENT_FACTS_PATCH).
  const paidConfirmed = async (): Promise<boolean> => {
    if (!patched(PAYMENT_FACTS_PATCH)) return true;
    if ((await stripeSays.invoicePayment({ subscriptionId, invoiceId, claimed: 'paid' })).status === 'paid') return true;
    paid = false;
    log.warn('invoice paid not confirmed by Stripe: ignored', { invoiceId });
    return false;
  };
  const canceledConfirmed = async (): Promise<boolean> => {
    if (!patched(PAYMENT_FACTS_PATCH)) return true;
    if (await stripeSays.canceled(subscriptionId)) return true;
    canceled = false;
    log.warn('subscription canceled not confirmed by Stripe: ignored', { invoiceId });
    return false;
  };

  /** Waits until `until` (unix ms), suspending on the way at the grace period. Returns what ended the wait. */
  const waitUntil = async (until: number): Promise<'due' | 'paid' | 'canceled' | 'method'> => {
    for (;;) {
      const stopAt = suspended ? until : Math.min(until, graceAt);
      await condition(() => paid || canceled || methodUpdated, Math.max(0, stopAt - Date.now()));
      if (paid) return 'paid';
      if (canceled) return 'canceled';
      if (methodUpdated) {
        methodUpdated = false;
        return 'method';
      }
      if (!suspended && Date.now() >= graceAt) await suspend();
      if (Date.now() >= until) return 'due';
    }
  };

  let ending: 'recovered' | 'stopped' | 'exhausted' | 'hard' = paidAlready ? 'recovered' : isHard(declineCode) ? 'hard' : 'exhausted';
  if (ending === 'exhausted') {
    for (attempt = 1; attempt <= pinned.maxAttempts; attempt++) {
      const offset = pinned.retryOffsetsSeconds[Math.min(attempt - 1, pinned.retryOffsetsSeconds.length - 1)]!;
      nextAttemptAt = Math.max(origin + offset * 1000, Date.now());
      await local.queueDunningNotice({ dunningId: workflowId, subscriptionId, customerId: input.customerId, invoiceId, attempt, template: attempt === 1 ? 'payment_failed' : 'payment_retry_failed' });
      await publish();
      let woke = await waitUntil(nextAttemptAt);
      while ((woke === 'paid' && !(await paidConfirmed())) || (woke === 'canceled' && !(await canceledConfirmed()))) woke = await waitUntil(nextAttemptAt);
      if (woke === 'paid') {
        ending = 'recovered';
        break;
      }
      if (woke === 'canceled') {
        ending = 'stopped';
        break;
      }
      const result = await stripe.retryInvoicePayment({ subscriptionId, invoiceId, idempotencyKey: `${workflowId}:attempt-${attempt}` });
      history.push({ attempt, at: Date.now(), trigger: woke === 'method' ? 'payment_method_updated' : 'schedule', outcome: result.outcome, declineCode: result.declineCode });
      await audit('dunning.retry', `attempt-${attempt}`, { outcome: result.outcome, declineCode: result.declineCode, trigger: woke === 'method' ? 'payment_method_updated' : 'schedule' });
      if (result.outcome === 'paid' || (paid && (await paidConfirmed()))) {
        ending = 'recovered';
        break;
      }
      if (isHard(result.declineCode)) {
        ending = 'hard';
        break;
      }
    }
    if (ending === 'exhausted') attempt = pinned.maxAttempts;
  }
  nextAttemptAt = null;

  if (ending === 'hard' || ending === 'exhausted') {
    // Escalate: suspend (if the grace period has not already), then the final action.
    await suspend();
    await audit('dunning.final', pinned.finalAction, { reason: ending === 'hard' ? 'hard decline' : 'retries exhausted' });
    if (pinned.finalAction === 'cancel') {
      await stripe.cancelStripeSubscription({ subscriptionId, atPeriodEnd: false, idempotencyKey: `${workflowId}:final-cancel` });
      state = 'canceled';
      await publish();
      return view();
    }
    state = pinned.finalAction === 'mark_unpaid' ? 'unpaid' : 'past_due';
    await publish();
    // The escalation stands until the customer pays (undo it) or the subscription ends.
    for (;;) {
      await condition(() => paid || canceled);
      if (paid && (await paidConfirmed())) {
        ending = 'recovered';
        break;
      }
      if (canceled && (await canceledConfirmed())) {
        ending = 'stopped';
        break;
      }
    }
  }

  if (ending === 'recovered') {
    await CancellationScope.nonCancellable(() => saga.compensate());
    state = 'recovered';
    await audit('dunning.recovered', 'campaign');
  } else {
    // The subscription ended: its workflow revokes what it granted; nothing to restore.
    state = 'stopped';
    await audit('dunning.stopped', 'campaign');
  }
  await publish();
  return view();
}

function validateInput(input: DunningInput): void {
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null) throw invalid(DUNNING_FAILURE.invalidInput, 'input must be an object');
  if (typeof input.subscriptionId !== 'string' || !SUBSCRIPTION_ID_PATTERN.test(input.subscriptionId)) problems.push('subscriptionId must be a Ledgerlock subscription id');
  if (typeof input.invoiceId !== 'string' || !/^in_[A-Za-z0-9_]{1,250}$/.test(input.invoiceId)) problems.push('invoiceId must be a Stripe invoice id (in_…)');
  if (typeof input.customerId !== 'string' || input.customerId === '') problems.push('customerId is required');
  if (typeof input.priceId !== 'string' || input.priceId === '') problems.push('priceId is required');
  if (!(typeof input.failedAt === 'number' && Number.isFinite(input.failedAt) && input.failedAt >= 0)) problems.push('failedAt must be unix seconds');
  if (problems.length > 0) throw invalid(DUNNING_FAILURE.invalidInput, problems.join('; '));
}

/** A pinned policy is checked once: a bad one fails the campaign at once, visibly, rather than retrying oddly. */
function validatePolicy(policy: DunningPolicy): void {
  const offsets = policy.retryOffsetsSeconds;
  const ok =
    Array.isArray(offsets) &&
    offsets.length > 0 &&
    offsets.every((o, i) => Number.isFinite(o) && o >= 0 && (i === 0 || o >= offsets[i - 1]!)) &&
    Number.isInteger(policy.maxAttempts) &&
    policy.maxAttempts >= 1 &&
    Number.isFinite(policy.gracePeriodSeconds) &&
    policy.gracePeriodSeconds >= 0 &&
    ['cancel', 'mark_unpaid', 'leave_past_due'].includes(policy.finalAction) &&
    Array.isArray(policy.hardDeclineCodes);
  if (!ok) throw invalid(DUNNING_FAILURE.invalidPolicy, `dunning policy ${String(policy?.name)} is invalid`);
}

function invalid(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, nonRetryable: true, message });
}
