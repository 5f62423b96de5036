import Stripe from 'stripe';
import { KmsUnavailableError } from '../crypto/errors';
import { databaseOutage } from '../db/db-errors';
import type { Dependency } from './health';

/** gRPC status codes that mean the Temporal frontend is not answering (UNAVAILABLE, DEADLINE_EXCEEDED). */
const GRPC_OUTAGE_CODES = new Set([4, 14]);

/** How long a caller told a dependency is down should wait before retrying. */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

/**
 * Which dependency `err` says is down, if it is an outage rather than a refusal: PostgreSQL
 * (terminated, restarting, refusing connections), KMS (unreachable, throttling), Stripe
 * (unreachable, 5xx, 429) or the Temporal frontend (gRPC UNAVAILABLE or a deadline),
 * looked for along the error's cause chain, since the Temporal client wraps gRPC errors.
 */
export function dependencyOutage(err: unknown): Dependency | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (databaseOutage(e) !== undefined) return 'postgres';
    if (e instanceof KmsUnavailableError) return 'kms';
    if (e instanceof Stripe.errors.StripeError) {
      const status = e.statusCode ?? 0;
      return e instanceof Stripe.errors.StripeConnectionError || status === 429 || status >= 500 ? 'stripe' : undefined;
    }
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number' && GRPC_OUTAGE_CODES.has(code) && 'metadata' in e) return 'temporal';
  }
  return undefined;
}
