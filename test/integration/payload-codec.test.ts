import type { KMSClient } from '@aws-sdk/client-kms';
import { ApplicationFailure, defaultPayloadConverter, type PayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codecKeyAlias } from '../../src/config/config';
import { CiphertextInvalidError } from '../../src/crypto/errors';
import { createKmsClient } from '../../src/kms/kms-client';
import { createLogger } from '../../src/log';
import { PAYLOAD_CONVERTER_PATH } from '../../src/temporal/data-converter';
import { ENCRYPTED_ENCODING, KmsPayloadCodec, refusedPayloadCount } from '../../src/temporal/payload-codec';
import { PAYLOAD_REFUSED, REFUSED_ENCODING, REFUSED_MARK } from '../../workflows/payload-refusal';

// Loaded the way the SDK loads it: by path, with Node's own require.
const converterModule = require(PAYLOAD_CONVERTER_PATH) as { payloadConverter: PayloadConverter; REFUSED_ENCODING: string; PAYLOAD_REFUSED: string; REFUSED_MARK: string };
const { payloadConverter } = converterModule;
import { testConfig } from '../support/stack';

describe('KMS payload codec', () => {
  const config = testConfig();
  let kms: KMSClient;
  let kmsCalls: string[];
  const codec = (maxUses = 1_000) =>
    new KmsPayloadCodec({
      kms: { send: (command: never) => (kmsCalls.push((command as object).constructor.name), kms.send(command)) } as never,
      masterKeyId: codecKeyAlias(config),
      limits: { maxAgeMs: 60_000, maxUses, maxEntries: 1_000 },
    });
  beforeAll(() => {
    kms = createKmsClient(config);
    kmsCalls = [];
  });
  afterAll(() => kms.destroy());

  const payload = (value: unknown) => defaultPayloadConverter.toPayload(value);

  it('encrypts payloads so nothing of the value is visible, and decodes them back', async () => {
    const original = [payload({ email: 'codec-probe@example.com' }), payload('plain string')];
    const encoded = await codec().encode(original);
    for (const p of encoded) {
      expect(Buffer.from(p.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
      expect(Buffer.from(p.data!).includes(Buffer.from('codec-probe'))).toBe(false);
      expect(Buffer.from(p.data!).includes(Buffer.from('json/plain'))).toBe(false);
    }
    const decoded = await codec().decode(encoded);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([{ email: 'codec-probe@example.com' }, 'plain string']);
  });

  it('rotates its encoding key after maxUses, and a cold codec still decodes every old payload', async () => {
    const rotating = codec(2);
    const encoded = await rotating.encode([payload(1), payload(2), payload(3), payload(4), payload(5)]);
    expect(KmsPayloadCodec.keyIdsOf(encoded).length).toBe(3);
    kmsCalls.length = 0;
    const decoded = await codec().decode(encoded);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([1, 2, 3, 4, 5]);
    // One unwrap per distinct key, then the cache serves.
    expect(kmsCalls.filter((c) => c === 'DecryptCommand')).toHaveLength(3);
  });

  it('needs one KMS call per encoding key, not per payload', async () => {
    const warm = codec();
    kmsCalls.length = 0;
    await warm.encode(Array.from({ length: 200 }, (_, i) => payload(i)));
    expect(kmsCalls).toEqual(['GenerateDataKeyCommand']);
  });

  it('refuses a tampered payload with a typed error', async () => {
    const [encoded] = await codec().encode([payload('secret')]);
    const data = Buffer.from(encoded!.data!);
    data[data.length - 1]! ^= 0x01;
    await expect(codec().decode([{ ...encoded!, data }])).rejects.toBeInstanceOf(CiphertextInvalidError);
    const relabelled = { ...encoded!, metadata: { ...encoded!.metadata, 'encryption-key-id': Buffer.from('00000000-0000-0000-0000-000000000000') } };
    await expect(codec().decode([relabelled])).rejects.toThrow();
  });

  it('refuses payloads it did not encode: their content is withheld, the refusal counted and logged without it', async () => {
    const lines: string[] = [];
    const logging = new KmsPayloadCodec({
      kms,
      masterKeyId: codecKeyAlias(config),
      limits: { maxAgeMs: 60_000, maxUses: 1_000, maxEntries: 1_000 },
      log: createLogger('warn', {}, (line) => lines.push(line)),
    });
    const before = refusedPayloadCount();
    const plain = payload({ outcome: 'paid', invoiceId: 'in_forged_probe' });
    const odd = { metadata: { encoding: Buffer.from('x-forged-probe/encoding') }, data: Buffer.from('forged-probe') };
    const [encrypted] = await logging.encode([payload('ours')]);
    const decoded = await logging.decode([plain, odd, encrypted!], { type: 'workflow', namespace: 'default', workflowId: 'subscription:probe' });

    for (const refused of decoded.slice(0, 2)) {
      expect(Buffer.from(refused.metadata!.encoding!).toString()).toBe(REFUSED_ENCODING);
      expect(refused.data?.length ?? 0).toBe(0);
    }
    expect(defaultPayloadConverter.fromPayload(decoded[2]!)).toBe('ours');
    expect(refusedPayloadCount() - before).toBe(2);
    expect(logging.refusedCount).toBe(2);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('json/plain');
    expect(lines[0]).toContain('subscription:probe');
    expect(lines.join('\n')).not.toMatch(/forged-probe|in_forged/);
  });

  it('turns a refused payload into a non-retryable PayloadRefused failure outside workflows', async () => {
    const [refused] = await codec().decode([payload({ a: 1 })]);
    let thrown: unknown;
    try {
      payloadConverter.fromPayload(refused!);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ApplicationFailure);
    expect(thrown).toMatchObject({ type: PAYLOAD_REFUSED, nonRetryable: true });
    // The converter's own values are unchanged.
    expect(payloadConverter.fromPayload(payloadConverter.toPayload({ a: 1 }))).toEqual({ a: 1 });
  });

  it('agrees with the workflow side on the refusal marker', () => {
    expect(converterModule.REFUSED_ENCODING).toBe(REFUSED_ENCODING);
    expect(converterModule.PAYLOAD_REFUSED).toBe(PAYLOAD_REFUSED);
    expect(converterModule.REFUSED_MARK).toBe(REFUSED_MARK);
  });
});
