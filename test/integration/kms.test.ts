import {
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  GenerateDataKeyCommand,
  InvalidCiphertextException,
  DisabledException,
  NotFoundException,
  ReEncryptCommand,
  CreateKeyCommand,
  EncryptCommand,
  GenerateMacCommand,
  InvalidKeyUsageException,
  KMSClient,
  KMSInvalidMacException,
  VerifyMacCommand,
} from '@aws-sdk/client-kms';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditActorKeyAlias, auditCheckpointKeyAlias, masterKeyAlias } from '../../src/config/config';
import { createKmsClient, ensureMasterKeys, generateMac, verifyMac } from '../../src/kms/kms-client';
import { startKmsDevServer } from '../../src/stack/kms-dev-server';
import { testConfig } from '../support/stack';

describe('KMS through @aws-sdk/client-kms', () => {
  const config = testConfig();
  let kms: KMSClient;
  beforeAll(() => {
    kms = createKmsClient(config);
  });
  afterAll(() => kms.destroy());

  it('has a master key alias per region after start-up, and ensuring again creates none', async () => {
    for (const region of config.regions) {
      const key = await kms.send(new DescribeKeyCommand({ KeyId: masterKeyAlias(config, region) }));
      expect(key.KeyMetadata?.KeyState).toBe('Enabled');
    }
    expect(await ensureMasterKeys(kms, config)).toEqual([]);
  });

  it('has an HMAC key for audit actor pseudonyms: GenerateMac is stable per message, VerifyMac checks it, and it encrypts nothing', async () => {
    const KeyId = auditActorKeyAlias(config);
    const key = await kms.send(new DescribeKeyCommand({ KeyId }));
    expect(key.KeyMetadata).toMatchObject({ KeyState: 'Enabled', KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC', MacAlgorithms: ['HMAC_SHA_256'] });
    const Message = Buffer.from('ops@example.com');
    const mac = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message }));
    expect(mac.Mac).toHaveLength(32);
    expect(mac.KeyId).toBe(key.KeyMetadata!.Arn);
    const again = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message }));
    expect(Buffer.from(again.Mac!)).toEqual(Buffer.from(mac.Mac!));
    const other = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message: Buffer.from('ops@example.org') }));
    expect(Buffer.from(other.Mac!)).not.toEqual(Buffer.from(mac.Mac!));

    expect((await kms.send(new VerifyMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message, Mac: mac.Mac }))).MacValid).toBe(true);
    await expect(kms.send(new VerifyMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message, Mac: other.Mac }))).rejects.toBeInstanceOf(KMSInvalidMacException);
    await expect(kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_512', Message }))).rejects.toBeInstanceOf(InvalidKeyUsageException);
    await expect(kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' }))).rejects.toBeInstanceOf(InvalidKeyUsageException);
    await expect(kms.send(new GenerateMacCommand({ KeyId: masterKeyAlias(config, 'eu'), MacAlgorithm: 'HMAC_SHA_256', Message }))).rejects.toBeInstanceOf(InvalidKeyUsageException);
  });

  it('GenerateDataKey then Decrypt returns the same data key, bound to its encryption context', async () => {
    const context = { customer: 'cus_probe', purpose: 'test' };
    const generated = await kms.send(
      new GenerateDataKeyCommand({ KeyId: masterKeyAlias(config, 'eu'), KeySpec: 'AES_256', EncryptionContext: context }),
    );
    expect(generated.Plaintext).toHaveLength(32);
    expect(generated.CiphertextBlob!.length).toBeGreaterThan(32);

    const decrypted = await kms.send(new DecryptCommand({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context }));
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(Buffer.from(generated.Plaintext!));
    expect(decrypted.KeyId).toBe(generated.KeyId);

    await expect(
      kms.send(new DecryptCommand({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: { ...context, customer: 'cus_other' } })),
    ).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('rejects a tampered ciphertext', async () => {
    const generated = await kms.send(new GenerateDataKeyCommand({ KeyId: masterKeyAlias(config, 'us'), KeySpec: 'AES_256' }));
    const tampered = Buffer.from(generated.CiphertextBlob!);
    tampered[tampered.length - 1]! ^= 0x01;
    await expect(kms.send(new DecryptCommand({ CiphertextBlob: tampered }))).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('re-encrypts a data key under another master key without exposing it', async () => {
    const other = await kms.send(new CreateKeyCommand({ Description: 'rotation target' }));
    const generated = await kms.send(new GenerateDataKeyCommand({ KeyId: masterKeyAlias(config, 'eu'), KeySpec: 'AES_256' }));
    const rewrapped = await kms.send(
      new ReEncryptCommand({ CiphertextBlob: generated.CiphertextBlob, DestinationKeyId: other.KeyMetadata!.KeyId }),
    );
    expect(rewrapped.KeyId).toBe(other.KeyMetadata!.Arn);
    const decrypted = await kms.send(new DecryptCommand({ CiphertextBlob: rewrapped.CiphertextBlob }));
    expect(Buffer.from(decrypted.Plaintext!)).toEqual(Buffer.from(generated.Plaintext!));
  });

  it('refuses a disabled key and an unknown alias with typed errors', async () => {
    const key = await kms.send(new CreateKeyCommand({ Description: 'to disable' }));
    await kms.send(new DisableKeyCommand({ KeyId: key.KeyMetadata!.KeyId }));
    await expect(kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyMetadata!.KeyId, KeySpec: 'AES_256' }))).rejects.toBeInstanceOf(
      DisabledException,
    );
    await kms.send(new EnableKeyCommand({ KeyId: key.KeyMetadata!.KeyId }));
    await expect(kms.send(new GenerateDataKeyCommand({ KeyId: key.KeyMetadata!.KeyId, KeySpec: 'AES_256' }))).resolves.toBeDefined();
    await expect(kms.send(new DescribeKeyCommand({ KeyId: 'alias/ledgerlock-nowhere' }))).rejects.toBeInstanceOf(NotFoundException);
  });

  it('has an HMAC_256 key for audit checkpoints whose MACs verify only for the same message and MAC', async () => {
    const alias = auditCheckpointKeyAlias(config);
    const { KeyMetadata: key } = await kms.send(new DescribeKeyCommand({ KeyId: alias }));
    expect(key).toMatchObject({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC', KeyState: 'Enabled' });

    const message = Buffer.from('["checkpoint",7,"ab"]');
    const { mac, keyArn } = await generateMac(kms, alias, message);
    expect(mac).toHaveLength(32);
    expect(keyArn).toBe(key!.Arn);
    // Deterministic, as RFC 2104 HMAC is.
    expect((await generateMac(kms, alias, message)).mac).toEqual(mac);
    expect(await verifyMac(kms, alias, message, mac)).toBe(true);
    expect(await verifyMac(kms, alias, Buffer.from('["checkpoint",8,"ab"]'), mac)).toBe(false);
    const flipped = Buffer.from(mac);
    flipped[0]! ^= 0x01;
    expect(await verifyMac(kms, alias, message, flipped)).toBe(false);
    // Another HMAC key's MAC of the same message is not this key's.
    const other = await kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC', Description: 'another mac key' }));
    expect(await verifyMac(kms, alias, message, (await generateMac(kms, other.KeyMetadata!.KeyId!, message)).mac)).toBe(false);
  });

  it('keeps MAC keys and encryption keys to their own operations', async () => {
    const alias = auditCheckpointKeyAlias(config);
    await expect(kms.send(new EncryptCommand({ KeyId: alias, Plaintext: Buffer.from('x') }))).rejects.toThrow();
    await expect(kms.send(new GenerateMacCommand({ KeyId: masterKeyAlias(config, 'eu'), Message: Buffer.from('x'), MacAlgorithm: 'HMAC_SHA_256' }))).rejects.toThrow();
    await expect(kms.send(new GenerateMacCommand({ KeyId: alias, Message: Buffer.from('x'), MacAlgorithm: 'HMAC_SHA_512' }))).rejects.toThrow();
    // An HMAC key must say what it is for, as AWS KMS requires.
    await expect(kms.send(new CreateKeyCommand({ KeySpec: 'HMAC_256' }))).rejects.toThrow(/KeyUsage/);
  });

  it('development KMS: its MACs are RFC 2104 HMAC-SHA-256 under the key it keeps, and a bad one is KMSInvalidMacException', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-devkms-mac-'));
    const server = await startKmsDevServer({ region: config.kms.region, dataDir });
    const dev = new KMSClient({ region: config.kms.region, endpoint: server.url, credentials: { accessKeyId: 'local-only', secretAccessKey: 'local-only' }, maxAttempts: 1 });
    try {
      const { KeyMetadata: key } = await dev.send(new CreateKeyCommand({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }));
      expect(key).toMatchObject({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC', MacAlgorithms: ['HMAC_SHA_256'] });
      const message = Buffer.from('what the checkpoint says');
      const { mac } = await generateMac(dev, key!.KeyId!, message);
      const stored = JSON.parse(readFileSync(path.join(dataDir, 'kms-dev-server.json'), 'utf8')) as { keys: Record<string, { material: string }> };
      expect(mac).toEqual(createHmac('sha256', Buffer.from(stored.keys[key!.KeyId!]!.material, 'base64')).update(message).digest());
      await expect(
        dev.send(new VerifyMacCommand({ KeyId: key!.KeyId!, Message: Buffer.from('something else'), Mac: mac, MacAlgorithm: 'HMAC_SHA_256' })),
      ).rejects.toBeInstanceOf(KMSInvalidMacException);
      await expect(dev.send(new EncryptCommand({ KeyId: key!.KeyId!, Plaintext: Buffer.from('x') }))).rejects.toBeInstanceOf(InvalidKeyUsageException);
    } finally {
      dev.destroy();
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
