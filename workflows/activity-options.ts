import { workflowInfo, type ActivityOptions } from '@temporalio/workflow';

/** Suffix of the task queue whose workers run the Stripe activities, rate-capped as a whole. */
export const STRIPE_QUEUE_SUFFIX = '-stripe';

/**
 * Retries never run out. Every activity goes through one failure mapping
 * (activities/failures.ts): a business refusal (a decline, an invalid request, a destroyed
 * key) is non-retryable and reaches the workflow at once, which compensates; anything else
 * (PostgreSQL, KMS or Stripe down, throttled, restarting) is an outage, retried with capped
 * backoff for as long as it lasts and visible meanwhile as a pending activity with its last
 * failure. An outage must never compensate: a customer answered 202 is not shredded
 * because KMS was down for an hour. Changing retry options does not change the commands a
 * workflow emits, so running histories replay unchanged. No `maximumAttempts`: unset is
 * unlimited (the SDK refuses 0).
 */

/** Work inside our walls (PostgreSQL, KMS): retried at most a minute apart until it goes through. */
export const LOCAL_RETRY = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' } as const;

/** Database, KMS and audit work: quick, retried with backoff until it goes through. */
export const LOCAL_STEP: ActivityOptions = { startToCloseTimeout: '30 seconds', retry: LOCAL_RETRY };

/** Calls to Stripe, on the rate-capped queue. Stripe's own retries are off: these are the retries. */
export function stripeStep(): ActivityOptions {
  return {
    taskQueue: `${workflowInfo().taskQueue}${STRIPE_QUEUE_SUFFIX}`,
    startToCloseTimeout: '1 minute',
    // The activities heartbeat while Stripe answers: a worker that dies mid-call is noticed in seconds.
    heartbeatTimeout: '10 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes' },
  };
}

/**
 * Asking Stripe to confirm what a signal claimed (a payment, a cancellation): retried for as
 * long as Stripe is unreachable, since the answer decides money and a genuine event must not
 * be lost to an outage. Only a refusal for good ends it.
 */
export function stripeConfirmationStep(): ActivityOptions {
  const step = stripeStep();
  const { maximumAttempts: _bounded, ...retry } = step.retry ?? {};
  return { ...step, retry };
}
