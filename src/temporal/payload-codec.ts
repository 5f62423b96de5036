import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { CiphertextInvalidError, KmsUnavailableError } from '../crypto/errors';
import { DataKeyCache, type DataKeyCacheLimits } from '../crypto/key-cache';
import { mapKmsError } from '../crypto/kms-errors';
import type { Logger } from '../log';
import { REFUSED_ENCODING } from '../../workflows/payload-refusal';

/**
 * Encrypts every payload the client and the worker hand to Temporal (inputs, results,
 * signals, updates, queries, activity arguments, memos, failure details), so the Temporal
 * server and its database hold ciphertext only.
 *
 * Envelope encryption again: payloads are sealed with AES-256-GCM under a payload data
 * key that KMS generated under the codec master key; each encoded payload carries the
 * data key's id and its wrapped bytes. Any process with KMS access can therefore decode
 * any payload, however old, and the encoding key can rotate as often as the cache limits
 * say without coordination. A payload is decodable until its master key is retired.
 *
 * Decoding refuses any payload this codec did not encrypt: plaintext from a client without
 * the codec is what an attacker who reaches the Temporal frontend would send. Its content is
 * withheld (a marker payload takes its place, see workflows/payload-refusal.ts), and the
 * refusal is logged and counted. Search attributes and headers never pass through a codec;
 * everything else Temporal hands a worker or client comes from an encoder of ours.
 */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
const META_ENCODING = 'encoding';
const META_KEY_ID = 'encryption-key-id';
const META_WRAPPED_KEY = 'encryption-wrapped-key';
const META_CIPHER = 'encryption-cipher';
const CIPHER = 'AES-256-GCM';
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

export interface PayloadCodecDeps {
  readonly kms: Pick<KMSClient, 'send'>;
  /** Alias or id of the KMS master key new payload keys are generated under. */
  readonly masterKeyId: string;
  /** How long, and for how many payloads, one encoding key is used before the next. */
  readonly limits: DataKeyCacheLimits;
  /**
   * When encoding, wait out a KMS that is unreachable or throttling, retrying with backoff
   * (at most `maxDelayMs` apart) for as long as it lasts, instead of failing. For workers:
   * the SDK ends a worker whose activity result cannot be encoded, so an outage must never
   * surface there. Clients that answer callers leave it off and fail fast.
   */
  readonly waitOutKmsOutages?: { readonly maxDelayMs: number };
  /** Where refusals are logged (opaque ids and counts only). */
  readonly log?: Pick<Logger, 'warn'>;
}

let refusedInProcess = 0;

/** Payloads refused by every codec of this process since it started (a counter, for metrics and tests). */
export function refusedPayloadCount(): number {
  return refusedInProcess;
}

/** Encodings worth naming in a log line; anything else is someone's invention and is not echoed. */
const KNOWN_ENCODINGS = new Set(['binary/null', 'binary/plain', 'json/plain', 'json/protobuf', 'binary/protobuf', REFUSED_ENCODING]);

const REFUSED_PAYLOAD: Payload = { metadata: { [META_ENCODING]: Buffer.from(REFUSED_ENCODING) }, data: new Uint8Array() };

interface EncodingKey {
  readonly keyId: string;
  readonly wrapped: Buffer;
  readonly key: KeyObject;
  readonly expiresAt: number;
  usesLeft: number;
}

function encryptionContext(keyId: string): Record<string, string> {
  return { 'ledgerlock:purpose': 'temporal-payload', 'ledgerlock:payload-key-id': keyId };
}

function aad(keyId: string): Buffer {
  return Buffer.from(JSON.stringify(['ledgerlock-payload', 1, keyId]), 'utf8');
}

/**
 * A payload key is cached under its id and its wrapped form together: a payload whose wrapped
 * key was altered misses the cache and goes to KMS, which refuses it, on every worker alike,
 * rather than decoding on a warm worker and failing on a cold one.
 */
function cacheId(keyId: string, wrapped: Uint8Array): string {
  return `${keyId}:${createHash('sha256').update(wrapped).digest('base64url')}`;
}

export class KmsPayloadCodec implements PayloadCodec {
  private current?: Promise<EncodingKey>;
  private readonly decodingKeys: DataKeyCache;
  private readonly unwrapping = new Map<string, Promise<void>>();
  /** Payloads this codec refused to decode. */
  refusedCount = 0;

  constructor(private readonly deps: PayloadCodecDeps) {
    this.decodingKeys = new DataKeyCache(deps.limits);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        const encoding = await this.encodingKey();
        const iv = randomBytes(IV_LENGTH);
        const cipher = createCipheriv('aes-256-gcm', encoding.key, iv);
        cipher.setAAD(aad(encoding.keyId));
        const plaintext = temporal.api.common.v1.Payload.encode(payload).finish();
        const data = Buffer.concat([cipher.update(plaintext), cipher.final()]);
        return {
          metadata: {
            [META_ENCODING]: Buffer.from(ENCRYPTED_ENCODING),
            [META_KEY_ID]: Buffer.from(encoding.keyId),
            [META_WRAPPED_KEY]: encoding.wrapped,
            [META_CIPHER]: Buffer.from(CIPHER),
          },
          data: Buffer.concat([iv, cipher.getAuthTag(), data]),
        };
      }),
    );
  }

  /**
   * Decrypts our payloads; any other payload (never encoded by this codec) is refused: its
   * content is withheld and replaced by a marker that converts to a `PayloadRefused`
   * failure. Throwing here instead would fail the workflow task over and over (a plaintext
   * signal would wedge the workflow for good); the marker refuses once, where it arrived.
   */
  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        const encoding = Buffer.from(payload.metadata?.[META_ENCODING] ?? []).toString();
        if (encoding !== ENCRYPTED_ENCODING) return this.refuse(encoding, context);
        const keyId = Buffer.from(payload.metadata?.[META_KEY_ID] ?? []).toString();
        const wrapped = payload.metadata?.[META_WRAPPED_KEY];
        const data = payload.data ? Buffer.from(payload.data) : Buffer.alloc(0);
        if (!keyId || !wrapped || data.length < IV_LENGTH + TAG_LENGTH) throw new CiphertextInvalidError('malformed encrypted payload');
        const key = await this.decodingKey(keyId, Buffer.from(wrapped));
        try {
          const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_LENGTH));
          decipher.setAAD(aad(keyId));
          decipher.setAuthTag(data.subarray(IV_LENGTH, IV_LENGTH + TAG_LENGTH));
          const plaintext = Buffer.concat([decipher.update(data.subarray(IV_LENGTH + TAG_LENGTH)), decipher.final()]);
          return temporal.api.common.v1.Payload.decode(plaintext);
        } catch {
          throw new CiphertextInvalidError(`encrypted payload under key ${keyId} failed authentication`);
        }
      }),
    );
  }

  private refuse(encoding: string, context: SerializationContext | undefined): Payload {
    refusedInProcess += 1;
    this.refusedCount += 1;
    this.deps.log?.warn({
      encoding: KNOWN_ENCODINGS.has(encoding) ? encoding : 'other',
      context: context?.type ?? null,
      workflowId: context?.workflowId ?? null,
    }, 'payload refused: not encrypted by our payload codec');
    return REFUSED_PAYLOAD;
  }

  /** Ids of the payload keys the given payloads were encrypted under (for audit records). */
  static keyIdsOf(payloads: readonly Payload[]): string[] {
    const ids = payloads
      .filter((p) => Buffer.from(p.metadata?.[META_ENCODING] ?? []).toString() === ENCRYPTED_ENCODING)
      .map((p) => Buffer.from(p.metadata?.[META_KEY_ID] ?? []).toString());
    return [...new Set(ids)];
  }

  /** The key to encrypt the next payload with; a spent one is replaced by a fresh data key. */
  private async encodingKey(): Promise<EncodingKey> {
    for (;;) {
      const pending = (this.current ??= this.generate());
      let encoding: EncodingKey;
      try {
        encoding = await pending;
      } catch (err) {
        if (this.current === pending) this.current = undefined;
        throw err;
      }
      if (encoding.expiresAt > Date.now() && encoding.usesLeft > 0) {
        encoding.usesLeft -= 1;
        return encoding;
      }
      // Spent: the first caller to notice retires it; everyone retries with the next one.
      if (this.current === pending) this.current = undefined;
    }
  }

  private async generate(): Promise<EncodingKey> {
    const keyId = randomUUID();
    const generated = await this.kmsCall('GenerateDataKey', () =>
      this.deps.kms.send(new GenerateDataKeyCommand({ KeyId: this.deps.masterKeyId, KeySpec: 'AES_256', EncryptionContext: encryptionContext(keyId) })),
    );
    const plaintext = Buffer.from(generated.Plaintext!);
    const key = this.decodingKeys.put(cacheId(keyId, generated.CiphertextBlob!), plaintext);
    plaintext.fill(0);
    generated.Plaintext!.fill(0);
    return {
      keyId,
      key,
      wrapped: Buffer.from(generated.CiphertextBlob!),
      expiresAt: Date.now() + this.deps.limits.maxAgeMs,
      usesLeft: this.deps.limits.maxUses,
    };
  }

  /** One KMS unwrap per payload key, however many payloads of it are decoded at once. */
  private async decodingKey(keyId: string, wrapped: Buffer): Promise<KeyObject> {
    const id = cacheId(keyId, wrapped);
    const cached = this.decodingKeys.use(id);
    if (cached) return cached;
    let unwrapping = this.unwrapping.get(id);
    if (!unwrapping) {
      unwrapping = this.unwrap(id, keyId, wrapped).finally(() => this.unwrapping.delete(id));
      this.unwrapping.set(id, unwrapping);
    }
    await unwrapping;
    // Counted as a use like any other; a key spent meanwhile is simply unwrapped again.
    return this.decodingKeys.use(id) ?? this.decodingKey(keyId, wrapped);
  }

  private async unwrap(id: string, keyId: string, wrapped: Buffer): Promise<void> {
    // Decoding fails fast even for workers: a task whose input cannot be read yet fails and Temporal retries it.
    const unwrapped = await this.kmsCall(
      'Decrypt',
      () => this.deps.kms.send(new DecryptCommand({ CiphertextBlob: wrapped, EncryptionContext: encryptionContext(keyId) })),
      false,
    );
    this.decodingKeys.put(id, Buffer.from(unwrapped.Plaintext!));
    unwrapped.Plaintext!.fill(0);
  }

  /** A KMS call, its errors mapped; an outage retried until it ends when `waitOutKmsOutages` says so and `mayWait`. */
  private async kmsCall<T>(operation: string, call: () => Promise<T>, mayWait = true): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const mapped = mapKmsError(err, operation);
        const wait = this.deps.waitOutKmsOutages;
        if (!wait || !mayWait || !(mapped instanceof KmsUnavailableError)) throw mapped;
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** Math.min(attempt, 10), wait.maxDelayMs)));
      }
    }
  }
}
