import type { KMSClient } from '@aws-sdk/client-kms';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codecKeyAlias } from '../../src/config/config';
import { CiphertextInvalidError } from '../../src/crypto/errors';
import { createKmsClient } from '../../src/kms/kms-client';
import { ENCRYPTED_ENCODING, KmsPayloadCodec } from '../../src/temporal/payload-codec';
import { testConfig } from '../support/stack';

describe('KMS payload codec', () => {
  const config = testConfig();
  let kms: KMSClient;
  let kmsCalls: string[];
  const codec = (maxUses = 1_000) =>
    new KmsPayloadCodec({
      kms: { send: (command: never) => (kmsCalls.push((command as object).constructor.name), kms.send(command)) } as never,
      masterKeyId: codecKeyAlias(config),
      limits: { maxAgeMs: 60_000, maxUses },
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

  it('passes through payloads it did not encode', async () => {
    const plain = payload({ a: 1 });
    expect(await codec().decode([plain])).toEqual([plain]);
  });
});
