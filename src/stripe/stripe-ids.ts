import { z } from 'zod';

/**
 * Stripe's object ids, one grammar for all of them: the object's prefix, an underscore, then
 * letters, digits and underscores (test-mode ids such as `pm_card_visa` carry underscores),
 * up to 250 after the prefix (Stripe documents 255 in all). Config keys, API bodies, CLI flags and
 * webhook events all parse ids with this, so an id one of them accepts the others accept too.
 */
export type StripeIdPrefix = 'price' | 'pm' | 'in' | 'evt' | 'sub' | 'cus' | 're' | 'ch' | 'pi';

export function stripeIdPattern(prefix: StripeIdPrefix): RegExp {
  return new RegExp(`^${prefix}_[A-Za-z0-9_]{1,250}$`);
}

/** A zod string of a Stripe id with `prefix`; `what` names the object in the refusal. */
export function stripeId(prefix: StripeIdPrefix, what: string) {
  return z.string().regex(stripeIdPattern(prefix), `must be a Stripe ${what} id (${prefix}_…)`);
}
