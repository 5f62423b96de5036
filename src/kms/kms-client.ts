import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  GenerateMacCommand,
  KMSClient,
  KMSInvalidMacException,
  NotFoundException,
  VerifyMacCommand,
  type KeySpec,
  type KeyUsageType,
} from '@aws-sdk/client-kms';
import { boundedLabel, kmsCalls } from '../metrics/metrics';
import { auditActorKeyAlias, auditCheckpointKeyAlias, codecKeyAlias, masterKeyAlias, type Config } from '../config/config';

/**
 * One KMS client for AWS KMS and local-kms alike: only the endpoint (and, locally, the
 * throwaway credentials local-kms ignores) differ.
 */
export function createKmsClient(config: Pick<Config, 'kms'>): KMSClient {
  const { region, endpoint } = config.kms;
  const kms = new KMSClient({
    region,
    ...(endpoint ? { endpoint } : {}),
    // Local only: a local KMS does not check signatures, but the SDK insists on signing.
    ...(config.kms.localCredentials ? { credentials: { accessKeyId: 'local-only', secretAccessKey: 'local-only' } } : {}),
    // Temporal retries activities; the SDK's own retries stay short so a call fails fast.
    maxAttempts: 2,
  });
  kms.middlewareStack.add(
    (next, context) => async (args) => {
      // The command's name only (GenerateDataKey, Decrypt, ...): key ids and contexts stay out of labels.
      const operation = boundedLabel(String(context.commandName ?? '').replace(/Command$/, ''));
      try {
        const output = await next(args);
        kmsCalls.inc({ operation, outcome: 'ok' });
        return output;
      } catch (err) {
        kmsCalls.inc({ operation, outcome: (err as { name?: unknown } | null)?.name === 'ThrottlingException' ? 'throttled' : 'error' });
        throw err;
      }
    },
    { step: 'initialize', name: 'ledgerlockKmsMetrics' },
  );
  return kms;
}

/**
 * Makes sure every region, the Temporal payload codec, the audit trail's actor pseudonyms
 * and the audit checkpoints have their key alias (the last two are HMAC keys: KMS computes
 * and checks MACs, the key never leaves it). Against the embedded local-kms the
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
  const encryption = { KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' } as const satisfies { KeySpec: KeySpec; KeyUsage: KeyUsageType };
  const wanted = [
    ...config.regions.map((region) => ({ alias: masterKeyAlias(config, region), purpose: `region ${region}`, spec: encryption })),
    { alias: codecKeyAlias(config), purpose: 'Temporal payloads', spec: encryption },
    { alias: auditActorKeyAlias(config), purpose: 'audit actor pseudonyms', spec: { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' } as const },
    { alias: auditCheckpointKeyAlias(config), purpose: 'audit checkpoints', spec: AUDIT_CHECKPOINT_KEY_SPEC },
  ];
  for (const { alias, purpose, spec } of wanted) {
    if (await aliasExists(kms, alias)) continue;
    if (!config.kms.local) {
      throw new Error(`KMS master key ${alias} (${purpose}) does not exist; create it before starting Ledgerlock`);
    }
    const key = await kms.send(
      new CreateKeyCommand({
        Description: `Ledgerlock key for ${purpose} (local development)`,
        ...spec,
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

/** What the audit checkpoint key must be, wherever it is provisioned. */
export const AUDIT_CHECKPOINT_KEY_SPEC = { KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' } as const satisfies { KeySpec: KeySpec; KeyUsage: KeyUsageType };
const MAC_ALGORITHM = 'HMAC_SHA_256';

/** The HMAC of `message` under the KMS key `keyId` (RFC 2104, HMAC-SHA-256), and the key's ARN. */
export async function generateMac(kms: KMSClient, keyId: string, message: Buffer): Promise<{ mac: Buffer; keyArn: string }> {
  const out = await kms.send(new GenerateMacCommand({ KeyId: keyId, Message: message, MacAlgorithm: MAC_ALGORITHM }));
  if (!out.Mac || !out.KeyId) throw new Error('KMS GenerateMac returned no MAC');
  return { mac: Buffer.from(out.Mac), keyArn: out.KeyId };
}

/**
 * Whether `mac` is the HMAC of `message` under `keyId`. AWS KMS rejects a wrong MAC with
 * KMSInvalidMacException; local-kms answers `MacValid: false`: both are `false` here, and
 * only an explicit `MacValid: true` is `true`. Other errors (unreachable, key disabled) throw.
 */
export async function verifyMac(kms: KMSClient, keyId: string, message: Buffer, mac: Buffer): Promise<boolean> {
  try {
    const out = await kms.send(new VerifyMacCommand({ KeyId: keyId, Message: message, Mac: mac, MacAlgorithm: MAC_ALGORITHM }));
    return out.MacValid === true;
  } catch (err) {
    if (err instanceof KMSInvalidMacException) return false;
    throw err;
  }
}
