import type { DataKeys } from './data-keys';
import { keyIdOf, open, seal, type CipherContext } from './ciphertext';

/**
 * Envelope encryption of record fields: AES-256-GCM under the customer's data key, which
 * KMS wraps under the master key of the customer's region.
 */
export class Envelope {
  constructor(private readonly dataKeys: DataKeys) {}

  /** Encrypts `plaintext` for the customer, bound to `context` (where it will be stored). */
  async encrypt(customer: { id: string; region: string }, plaintext: string, context: CipherContext): Promise<Buffer> {
    // The warm path stays synchronous: most records are sealed under a cached key.
    const { keyId, key } = this.dataKeys.cachedActiveKey(customer.id) ?? (await this.dataKeys.activeKey(customer.id, customer.region));
    return seal(key, keyId, plaintext, context);
  }

  /**
   * @throws CiphertextInvalidError when the ciphertext, IV, tag or context was altered;
   * DataKeyDestroyedError when its customer was erased; UnknownDataKeyError; KMS errors.
   */
  async decrypt(blob: Buffer, context: CipherContext): Promise<string> {
    const keyId = keyIdOf(blob);
    const key = this.dataKeys.cachedKey(keyId) ?? (await this.dataKeys.key(keyId));
    return open(key, blob, context, keyId).toString('utf8');
  }
}
