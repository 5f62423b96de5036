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
