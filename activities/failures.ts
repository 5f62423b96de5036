import { ApplicationFailure } from '@temporalio/common';
import Stripe from 'stripe';
import { AuditInputError, AuditKeyConflictError } from '../src/audit/audit-types';
import { CryptoError } from '../src/crypto/errors';
import { databaseOutage } from '../src/db/db-errors';
import { stripeFailure } from '../src/stripe/stripe-errors';

/** Failure types of dependencies that are not answering; persisted in histories, never rename. */
export const OUTAGE_FAILURE = {
  database: 'DatabaseUnavailable',
  network: 'DependencyUnreachable',
} as const;

/** Failure type of a database error that is not an outage (a bug, most likely): retried, visible, fixed forward. */
export const DATABASE_ERROR = 'DatabaseError';

/** Node's socket errors: whatever peer it was, it is not answering now. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED']);

/**
 * The one mapping of everything an activity can throw to a Temporal failure, applied to
 * every activity at registration ({@link mappingFailures}):
 * - an `ApplicationFailure` the activity chose stays as it is;
 * - our crypto errors keep their `type`, final or not as the error says (a destroyed key or
 *   a KMS refusal is final; KMS unreachable or throttling retries);
 * - Stripe errors go through {@link stripeFailure} (declines and invalid requests final,
 *   429 after Retry-After, the rest retried);
 * - PostgreSQL connection trouble and socket errors are outages, retried;
 * - any other database error is retried too, typed: it stays visible as a pending
 *   activity with its last failure until a fix is deployed, and never compensates.
 * Messages carry the error's class or code only: SQL, SDK messages and key ids stay out.
 */
export function toActivityFailure(err: unknown, activity: string): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof CryptoError) return ApplicationFailure.create({ type: err.type, message: err.message, nonRetryable: !err.retryable });
  if (err instanceof AuditInputError) {
    // A refused entry stays refused; the message names the field and rule only, never the value.
    return ApplicationFailure.create({ type: 'AuditRejected', message: err.message, nonRetryable: true, details: [{ field: err.field }] });
  }
  if (err instanceof AuditKeyConflictError) return ApplicationFailure.create({ type: 'AuditKeyConflict', message: err.message, nonRetryable: true });
  if (err instanceof Stripe.errors.StripeError) return stripeFailure(err, activity);
  const outage = databaseOutage(err);
  if (outage) return ApplicationFailure.create({ type: OUTAGE_FAILURE.database, message: `${activity}: PostgreSQL unavailable (${outage})` });
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) {
    return ApplicationFailure.create({ type: OUTAGE_FAILURE.network, message: `${activity}: dependency unreachable (${code})` });
  }
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return ApplicationFailure.create({ type: DATABASE_ERROR, message: `${activity}: PostgreSQL error ${code}` });
  }
  return err;
}

type ActivityFunction = (...args: never[]) => Promise<unknown>;

/**
 * Wraps every activity of a factory so that whatever it throws leaves through
 * {@link toActivityFailure}: one mapping for all, applied where activities are registered.
 */
export function mappingFailures<T extends Record<string, ActivityFunction>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, run]) => [
      name,
      async (...args: never[]) => {
        try {
          return await run(...args);
        } catch (err) {
          throw toActivityFailure(err, name);
        }
      },
    ]),
  ) as T;
}
