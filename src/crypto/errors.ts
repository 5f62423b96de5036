/**
 * Encryption failures, each with a stable `type` (what Temporal failures and API problems
 * carry) and whether retrying can help. Messages name ids, never plaintext or key material.
 */
export abstract class CryptoError extends Error {
  abstract readonly type: string;
  abstract readonly retryable: boolean;
}

/** The ciphertext, its IV, tag or AAD was altered, or it belongs somewhere else. */
export class CiphertextInvalidError extends CryptoError {
  readonly type = 'CiphertextInvalid';
  readonly retryable = false;
  override name = 'CiphertextInvalidError';
}

export class UnknownDataKeyError extends CryptoError {
  readonly type = 'UnknownDataKey';
  readonly retryable = false;
  override name = 'UnknownDataKeyError';
  constructor(readonly keyId: string) {
    super(`data key ${keyId} is unknown`);
  }
}

/** Crypto-shredded: the customer was erased and this data can never be read again. */
export class DataKeyDestroyedError extends CryptoError {
  readonly type = 'DataKeyDestroyed';
  readonly retryable = false;
  override name = 'DataKeyDestroyedError';
  constructor(readonly keyId: string) {
    super(`data key ${keyId} has been destroyed`);
  }
}

/** KMS could not be reached or throttled us: the same call may succeed later. */
export class KmsUnavailableError extends CryptoError {
  readonly type = 'KmsUnavailable';
  readonly retryable = true;
  override name = 'KmsUnavailableError';
}

/** KMS refused for good: key disabled, pending deletion, access denied, wrong context. */
export class KmsRefusedError extends CryptoError {
  readonly type = 'KmsRefused';
  readonly retryable = false;
  override name = 'KmsRefusedError';
}
