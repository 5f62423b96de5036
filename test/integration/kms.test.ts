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
  VerifyMacCommand,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditActorKeyAlias, auditCheckpointKeyAlias, masterKeyAlias } from '../../src/config/config';
import { createKmsClient, ensureMasterKeys, generateMac, verifyMac } from '../../src/kms/kms-client';
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
    expect(key.KeyMetadata).toMatchObject({ KeyState: 'Enabled', KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' });
    // local-kms leaves MacAlgorithms out of DescribeKey (README, "local-kms"); the HMAC_SHA_512 refusal below covers it.
    const Message = Buffer.from('ops@example.com');
    const mac = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message }));
    expect(mac.Mac).toHaveLength(32);
    expect(mac.KeyId).toBe(key.KeyMetadata!.Arn);
    const again = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message }));
    expect(Buffer.from(again.Mac!)).toEqual(Buffer.from(mac.Mac!));
    const other = await kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message: Buffer.from('ops@example.org') }));
    expect(Buffer.from(other.Mac!)).not.toEqual(Buffer.from(mac.Mac!));

    expect((await kms.send(new VerifyMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_256', Message, Mac: mac.Mac }))).MacValid).toBe(true);
    // AWS KMS throws KMSInvalidMacException for a wrong MAC, local-kms answers MacValid: false; verifyMac is false for both.
    expect(await verifyMac(kms, KeyId, Message, Buffer.from(other.Mac!))).toBe(false);
    // A MAC algorithm the key does not have: AWS KMS says InvalidKeyUsageException, local-kms ValidationException.
    await expect(kms.send(new GenerateMacCommand({ KeyId, MacAlgorithm: 'HMAC_SHA_512', Message }))).rejects.toThrow();
    // Misused keys: AWS KMS answers InvalidKeyUsageException; local-kms answers ValidationException
    // or, for a data key from an HMAC key, InternalFailureException (README, "local-kms").
    await expect(kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' }))).rejects.toThrow();
    await expect(kms.send(new GenerateMacCommand({ KeyId: masterKeyAlias(config, 'eu'), MacAlgorithm: 'HMAC_SHA_256', Message }))).rejects.toThrow(/key usage/i);
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
});
