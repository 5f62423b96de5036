import type { Payload, PayloadCodec } from '@temporalio/common';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoError } from '../../src/crypto/errors';
import { createServices, type Services } from '../../src/services';
import { ENCRYPTED_ENCODING } from '../../src/temporal/payload-codec';

/** The marker a refused payload becomes (src/temporal/payload-converter.js, plain JavaScript for the workflow bundle). */
const REFUSED = 'binary/ledgerlock-refused';
import { quietLog } from '../support/runtime';
import { testConfig } from '../support/stack';

/**
 * The payload codec's decode against arbitrary payloads, as anyone who can reach Temporal may
 * send them: any metadata (keys, values, our own keys with other values) and any data. Each
 * payload is decoded, replaced by the refusal marker (not ours), or refused with a typed
 * CryptoError; nothing else is thrown, and a tampered genuine payload never decodes.
 */

const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const text = (value: string) => new TextEncoder().encode(value);

describe('payload codec decode (property)', () => {
  let services: Services;
  let codec: PayloadCodec;
  let genuine: Payload;
  const plain: Payload = { metadata: { encoding: text('json/plain') }, data: text('{"invoice":"in_fuzz"}') };

  beforeAll(async () => {
    services = createServices(testConfig(), quietLog);
    codec = services.dataConverter.payloadCodecs![0]!;
    [genuine] = (await codec.encode([plain])) as [Payload];
  });
  afterAll(async () => {
    await services?.close();
  });

  /** decode of one payload: the decoded payload, or the typed error it was refused with. */
  const decodeOne = async (payload: Payload): Promise<{ payload: Payload } | { err: CryptoError }> => {
    try {
      const [out] = await codec.decode([payload]);
      return { payload: out! };
    } catch (err) {
      expect(err).toBeInstanceOf(CryptoError);
      return { err: err as CryptoError };
    }
  };
  const encodingOf = (p: Payload) => Buffer.from(p.metadata?.encoding ?? []).toString();

  it('replaces every payload it did not encrypt with the refusal marker, whatever its metadata and data', async () => {
    const metadata = fc.dictionary(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('encoding', 'encryption-key-id', 'encryption-wrapped-key', 'encryption-cipher')), bytes(64), { maxKeys: 5 });
    await fc.assert(
      fc.asyncProperty(metadata, fc.option(bytes(256), { nil: undefined }), async (meta, data) => {
        fc.pre(Buffer.from(meta.encoding ?? []).toString() !== ENCRYPTED_ENCODING);
        const outcome = await decodeOne({ metadata: meta, ...(data ? { data } : {}) });
        expect('payload' in outcome && encodingOf(outcome.payload)).toBe(REFUSED);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses a payload that claims to be ours with a typed error, without asking KMS when it is malformed', async () => {
    const claimed = fc.record(
      {
        keyId: fc.oneof(fc.constant(''), fc.string({ maxLength: 40 }), fc.uuid()),
        wrapped: fc.option(bytes(200), { nil: undefined }),
        data: bytes(80),
      },
      { requiredKeys: ['data'] },
    );
    await fc.assert(
      fc.asyncProperty(claimed, async ({ keyId, wrapped, data }) => {
        const metadata: Record<string, Uint8Array> = { encoding: text(ENCRYPTED_ENCODING), 'encryption-cipher': text('AES-256-GCM') };
        if (keyId !== undefined) metadata['encryption-key-id'] = text(keyId);
        if (wrapped) metadata['encryption-wrapped-key'] = wrapped;
        const outcome = await decodeOne({ metadata, data });
        expect('err' in outcome).toBe(true);
      }),
      { numRuns: 300 },
    );
  }, 60_000);

  it('decodes the genuine payload, and refuses it after any change to its data, key id or wrapped key', async () => {
    const decoded = await decodeOne(genuine);
    expect('payload' in decoded && Buffer.from(decoded.payload.data!).toString()).toBe('{"invoice":"in_fuzz"}');
    const part = fc.constantFrom('data', 'encryption-key-id', 'encryption-wrapped-key');
    await fc.assert(
      fc.asyncProperty(part, fc.nat(), fc.integer({ min: 1, max: 255 }), async (which, at, mask) => {
        const metadata = { ...genuine.metadata };
        let data = genuine.data!;
        if (which === 'data') {
          data = Buffer.from(data);
          data[at % data.length]! ^= mask;
        } else {
          const value = Buffer.from(metadata[which]!);
          value[at % value.length]! ^= mask;
          metadata[which] = value;
        }
        const outcome = await decodeOne({ metadata, data });
        expect('err' in outcome).toBe(true);
      }),
      { numRuns: 300 },
    );
  }, 60_000);
});
