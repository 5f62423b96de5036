import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  KMSClient,
  NotFoundException,
  type KeySpec,
  type KeyUsageType,
} from '@aws-sdk/client-kms';
import { auditActorKeyAlias, codecKeyAlias, masterKeyAlias, type Config } from '../config/config';

/**
 * One KMS client for AWS KMS and local-kms alike: only the endpoint (and, locally, the
 * throwaway credentials local-kms ignores) differ.
 */
export function createKmsClient(config: Pick<Config, 'kms'>): KMSClient {
  const { region, endpoint } = config.kms;
  return new KMSClient({
    region,
    ...(endpoint ? { endpoint } : {}),
    // Local only: a local KMS does not check signatures, but the SDK insists on signing.
    ...(config.kms.localCredentials ? { credentials: { accessKeyId: 'local-only', secretAccessKey: 'local-only' } } : {}),
    // Temporal retries activities; the SDK's own retries stay short so a call fails fast.
    maxAttempts: 2,
  });
}

/**
 * Makes sure every region, the Temporal payload codec and the audit trail's actor
 * pseudonyms (an HMAC key) have their key alias. Against the embedded local-kms the
 * missing keys are created (first start); elsewhere keys are provisioned by the operator,
 * so a missing alias is an error that names it.
 *
 * @returns the aliases created.
 */
export async function ensureMasterKeys(
  kms: KMSClient,
  config: Pick<Config, 'kms' | 'regions'>,
): Promise<string[]> {
  const created: string[] = [];
  const symmetric = { spec: 'SYMMETRIC_DEFAULT', usage: 'ENCRYPT_DECRYPT' } as const satisfies { spec: KeySpec; usage: KeyUsageType };
  const wanted = [
    ...config.regions.map((region) => ({ alias: masterKeyAlias(config, region), purpose: `region ${region}`, ...symmetric })),
    { alias: codecKeyAlias(config), purpose: 'Temporal payloads', ...symmetric },
    { alias: auditActorKeyAlias(config), purpose: 'audit actor pseudonyms', spec: 'HMAC_256', usage: 'GENERATE_VERIFY_MAC' } as const,
  ];
  for (const { alias, purpose, spec, usage } of wanted) {
    if (await aliasExists(kms, alias)) continue;
    if (!config.kms.local) {
      throw new Error(`KMS master key ${alias} (${purpose}) does not exist; create it before starting Ledgerlock`);
    }
    const key = await kms.send(
      new CreateKeyCommand({
        Description: `Ledgerlock key for ${purpose} (local development)`,
        KeySpec: spec,
        KeyUsage: usage,
      }),
    );
    await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.KeyMetadata!.KeyId! }));
    created.push(alias);
  }
  return created;
}

async function aliasExists(kms: KMSClient, alias: string): Promise<boolean> {
  try {
    await kms.send(new DescribeKeyCommand({ KeyId: alias }));
    return true;
  } catch (err) {
    if (err instanceof NotFoundException) return false;
    throw err;
  }
}
