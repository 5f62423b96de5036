import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from 'node:crypto';
import { CiphertextInvalidError } from './errors';

/**
 * The self-describing record ciphertext, version 1:
 *
 *   version (1 byte = 0x01) | data key id (16 bytes, UUID) | IV (12) | GCM tag (16) | ciphertext
 *
 * AES-256-GCM with a fresh random 96-bit IV per encryption. The AAD binds the ciphertext
 * to where it lives (table, column, row id) and to its key id, so a ciphertext copied to
 * another row, column or table, or relabelled with another key, fails to decrypt.
 */
export const CIPHERTEXT_V1 = 0x01;
const KEY_ID_LENGTH = 16;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const HEADER_LENGTH = 1 + KEY_ID_LENGTH + IV_LENGTH + TAG_LENGTH;

/** Where a ciphertext lives; part of its AAD. */
export interface CipherContext {
  readonly table: string;
  readonly column: string;
  readonly rowId: string;
}

export function seal(key: KeyObject | Buffer, keyId: string, plaintext: Buffer | string, context: CipherContext): Buffer {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad(CIPHERTEXT_V1, keyId, context));
  const data = Buffer.concat([typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext), cipher.final()]);
  const header = Buffer.allocUnsafe(HEADER_LENGTH);
  header[0] = CIPHERTEXT_V1;
  uuidToBytes(keyId).copy(header, 1);
  iv.copy(header, 1 + KEY_ID_LENGTH);
  cipher.getAuthTag().copy(header, 1 + KEY_ID_LENGTH + IV_LENGTH);
  return Buffer.concat([header, data], HEADER_LENGTH + data.length);
}

/** The key id a ciphertext names, read without decrypting (to fetch the right key). */
export function keyIdOf(blob: Buffer): string {
  if (blob.length < HEADER_LENGTH || blob[0] !== CIPHERTEXT_V1) {
    throw new CiphertextInvalidError('not a Ledgerlock v1 ciphertext');
  }
  return bytesToUuid(blob.subarray(1, 1 + KEY_ID_LENGTH));
}

/**
 * @throws CiphertextInvalidError when anything was altered or the context differs; never
 * returns garbage plaintext (GCM authenticates before releasing anything).
 */
export function open(key: KeyObject | Buffer, blob: Buffer, context: CipherContext, keyId: string = keyIdOf(blob)): Buffer {
  const iv = blob.subarray(1 + KEY_ID_LENGTH, 1 + KEY_ID_LENGTH + IV_LENGTH);
  const tag = blob.subarray(1 + KEY_ID_LENGTH + IV_LENGTH, HEADER_LENGTH);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(aad(CIPHERTEXT_V1, keyId, context));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(blob.subarray(HEADER_LENGTH)), decipher.final()]);
  } catch {
    throw new CiphertextInvalidError(`ciphertext for ${context.table}.${context.column} of row ${context.rowId} failed authentication`);
  }
}

function aad(version: number, keyId: string, context: CipherContext): Buffer {
  // JSON keeps the fields unambiguous whatever characters they contain.
  return Buffer.from(JSON.stringify(['ledgerlock', version, context.table, context.column, context.rowId, keyId]), 'utf8');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Key ids recur on every record: their 16 bytes are computed once (a handful of keys per process). */
const keyIdBytes = new Map<string, Buffer>();

function uuidToBytes(id: string): Buffer {
  let bytes = keyIdBytes.get(id);
  if (!bytes) {
    if (!UUID.test(id)) throw new Error(`data key id must be a lowercase UUID, got ${JSON.stringify(id)}`);
    bytes = Buffer.from(id.replace(/-/g, ''), 'hex');
    if (keyIdBytes.size >= 10_000) keyIdBytes.clear();
    keyIdBytes.set(id, bytes);
  }
  return bytes;
}

function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
