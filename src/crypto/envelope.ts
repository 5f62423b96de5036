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
    const { keyId, key } = await this.dataKeys.activeKey(customer.id, customer.region);
    try {
      return seal(key, keyId, Buffer.from(plaintext, 'utf8'), context);
    } finally {
      key.fill(0);
    }
  }

  /**
   * @throws CiphertextInvalidError when the ciphertext, IV, tag or context was altered;
   * DataKeyDestroyedError when its customer was erased; UnknownDataKeyError; KMS errors.
   */
  async decrypt(blob: Buffer, context: CipherContext): Promise<string> {
    const key = await this.dataKeys.key(keyIdOf(blob));
    try {
      return open(key, blob, context).toString('utf8');
    } finally {
      key.fill(0);
    }
  }
}
