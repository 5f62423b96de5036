import { workflowInfo, type ActivityOptions } from '@temporalio/workflow';

/** Suffix of the task queue whose workers run the Stripe activities, rate-capped as a whole. */
export const STRIPE_QUEUE_SUFFIX = '-stripe';

/** Database, KMS and audit work: quick, retried with backoff until it goes through. */
export const LOCAL_STEP: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
};

/** Calls to Stripe, on the rate-capped queue. Stripe's own retries are off: these are the retries. */
export function stripeStep(): ActivityOptions {
  return {
    taskQueue: `${workflowInfo().taskQueue}${STRIPE_QUEUE_SUFFIX}`,
    startToCloseTimeout: '1 minute',
    // The activities heartbeat while Stripe answers: a worker that dies mid-call is noticed in seconds.
    heartbeatTimeout: '10 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 15 },
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
