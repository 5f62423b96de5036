import { ApplicationFailure } from '@temporalio/common';
import { AuditInputError, AuditKeyConflictError } from '../src/audit/audit-types';
import { CryptoError } from '../src/crypto/errors';

/**
 * Our typed errors as Temporal failures: the `type` workflows match on, and retryable or
 * not as the error says. Anything else is rethrown as it is (retried by the policy).
 */
export function toActivityFailure(err: unknown): unknown {
  if (err instanceof CryptoError) return ApplicationFailure.create({ type: err.type, message: err.message, nonRetryable: !err.retryable });
  // A refused audit entry stays refused. Messages name the field and rule, never a value.
  if (err instanceof AuditInputError) return ApplicationFailure.create({ type: 'AuditRejected', message: err.message, nonRetryable: true, details: [{ field: err.field }] });
  if (err instanceof AuditKeyConflictError) return ApplicationFailure.create({ type: 'AuditKeyConflict', message: err.message, nonRetryable: true });
  return err;
}

/** Runs `work`, converting our typed errors on the way out. */
export async function mappingFailures<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw toActivityFailure(err);
  }
}
