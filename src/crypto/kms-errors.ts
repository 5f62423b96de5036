import { KMSServiceException } from '@aws-sdk/client-kms';
import { KmsRefusedError, KmsUnavailableError } from './errors';

/** KMS exceptions a retry can fix: throttling and KMS-side trouble. */
const TRANSIENT = new Set(['ThrottlingException', 'KMSInternalException', 'DependencyTimeoutException', 'LimitExceededException']);

/**
 * The one place that maps KMS SDK errors to ours. Anything that is not a KMS answer
 * (connection refused, timeout, DNS) is transient; a KMS refusal is final. The SDK's
 * message is dropped: it can carry key ARNs and account ids.
 */
export function mapKmsError(err: unknown, operation: string): Error {
  if (err instanceof KMSServiceException) {
    const status = err.$metadata?.httpStatusCode ?? 0;
    if (TRANSIENT.has(err.name) || status >= 500) return new KmsUnavailableError(`KMS ${operation} failed: ${err.name}`);
    return new KmsRefusedError(`KMS refused ${operation}: ${err.name}`);
  }
  return new KmsUnavailableError(`KMS ${operation} unreachable: ${(err as Error)?.name ?? 'error'}`);
}
