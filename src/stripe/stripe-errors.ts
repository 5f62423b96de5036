import { ApplicationFailure } from '@temporalio/common';
import Stripe from 'stripe';

/** Failure types workflows match on; persisted in histories, so never rename one. */
export const STRIPE_FAILURE = {
  cardDeclined: 'StripeCardDeclined',
  invalidRequest: 'StripeInvalidRequest',
  authentication: 'StripeAuthentication',
  rateLimited: 'StripeRateLimited',
  unavailable: 'StripeUnavailable',
} as const;

/**
 * The one place Stripe errors become activity failures:
 * - declines and invalid requests are final (non-retryable) and typed, with the decline
 *   code and the offending parameter as details;
 * - 429 retries after Stripe's Retry-After (or a second when it gives none);
 * - 5xx, timeouts, connection errors and a refused API key retry on the activity's backoff.
 * Stripe's own message is never kept: it can quote what was sent (a metadata value, an
 * e-mail address), and failures live on in workflow histories and the subscriptions table.
 * Codes, types and parameter names only.
 */
export function stripeFailure(err: unknown, operation: string): ApplicationFailure {
  if (!(err instanceof Stripe.errors.StripeError)) {
    return ApplicationFailure.create({ type: STRIPE_FAILURE.unavailable, message: `Stripe ${operation}: ${(err as Error)?.name ?? 'error'}` });
  }
  if (err instanceof Stripe.errors.StripeCardError) {
    return ApplicationFailure.create({
      type: STRIPE_FAILURE.cardDeclined,
      nonRetryable: true,
      message: `Stripe ${operation}: card declined (${err.decline_code ?? err.code ?? 'unknown'})`,
      details: [{ code: err.code ?? null, declineCode: err.decline_code ?? null }],
    });
  }
  if (err instanceof Stripe.errors.StripeRateLimitError || err.statusCode === 429) {
    const retryAfter = Number(err.headers?.['retry-after']);
    return ApplicationFailure.create({
      type: STRIPE_FAILURE.rateLimited,
      message: `Stripe ${operation}: rate limited`,
      nextRetryDelay: Number.isFinite(retryAfter) && retryAfter > 0 ? `${retryAfter}s` : '1s',
    });
  }
  if (err instanceof Stripe.errors.StripeInvalidRequestError || err instanceof Stripe.errors.StripeIdempotencyError) {
    return ApplicationFailure.create({
      type: STRIPE_FAILURE.invalidRequest,
      nonRetryable: true,
      // Stripe's own text can quote what was sent (a metadata value, an address): codes only.
      message: `Stripe ${operation}: invalid request (${err.code ?? err.type}${err.param ? `, ${paramName(err.param)}` : ''})`,
      details: [{ code: err.code ?? null, param: err.param ? paramName(err.param) : null }],
    });
  }
  if (err instanceof Stripe.errors.StripeAuthenticationError || err instanceof Stripe.errors.StripePermissionError) {
    // Not the customer's doing: an operator fixes the key, and meanwhile the step waits (a
    // compensation would meet the same key). Retried, visible as the pending activity's last failure.
    return ApplicationFailure.create({ type: STRIPE_FAILURE.authentication, message: `Stripe ${operation}: ${err.type}` });
  }
  return ApplicationFailure.create({ type: STRIPE_FAILURE.unavailable, message: `Stripe ${operation}: ${err.type} (${err.statusCode ?? 'no status'})` });
}

/** True when Stripe says the object is already gone: deleting it again is a success. */
export function isResourceMissing(err: unknown): boolean {
  return err instanceof Stripe.errors.StripeInvalidRequestError && err.code === 'resource_missing';
}

/** A Stripe parameter path without the caller's own names in it: `metadata[contact]` is `metadata`. */
function paramName(param: string): string {
  const top = /^[a-z_]+/.exec(param)?.[0] ?? 'parameter';
  return top === 'metadata' ? top : param.replace(/[^A-Za-z0-9_[\]]/g, '').slice(0, 100);
}
