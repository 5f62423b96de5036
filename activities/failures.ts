import { ApplicationFailure } from '@temporalio/common';
import { CryptoError } from '../src/crypto/errors';

/**
 * Our typed errors as Temporal failures: the `type` workflows match on, and retryable or
 * not as the error says. Anything else is rethrown as it is (retried by the policy).
 */
export function toActivityFailure(err: unknown): unknown {
  if (err instanceof CryptoError) return ApplicationFailure.create({ type: err.type, message: err.message, nonRetryable: !err.retryable });
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
