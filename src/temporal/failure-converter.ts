import { DefaultFailureConverter } from '@temporalio/common';

/**
 * Failure messages and stack traces go into encoded attributes, so the payload codec
 * encrypts them like any other payload: an exception message that mentions a customer
 * never reaches the Temporal server in clear. Loaded by path (it also runs inside the
 * workflow sandbox), so it imports nothing but the SDK.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
