import { ensureLocalSigningKey } from '../../src/auth/signing-keys';
import type { Scope } from '../../src/auth/scopes';
import { mintToken } from '../../src/auth/tokens';
import type { Config } from '../../src/config/config';

/** A token minted with the test run's local signing key, as `ledgerlock token` would. */
export async function tokenFor(config: Config, subject: string, scopes: readonly Scope[], ttlSeconds = 600): Promise<string> {
  const key = await ensureLocalSigningKey(config.dataDir);
  return mintToken(config, key, { subject, scopes, ttlSeconds });
}
