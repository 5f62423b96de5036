import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/config';
import { publishOnce, readIfExists } from '../local-files';

const SECRET = /^whsec_[A-Za-z0-9_+/=-]{16,}$/;

export function localWebhookSecretPath(dataDir: string): string {
  return path.join(dataDir, 'stripe', 'webhook-secret');
}

/**
 * The webhook endpoint secrets the API accepts: STRIPE_WEBHOOK_SECRET, or locally the data
 * folder's own, generated on first use, which `ledgerlock stripe trigger` signs with.
 */
export function webhookSecrets(config: Pick<Config, 'mode' | 'dataDir' | 'stripe'>): readonly string[] {
  if (config.stripe.webhookSecrets) return config.stripe.webhookSecrets;
  if (config.mode !== 'local') throw new Error('STRIPE_WEBHOOK_SECRET is required when LEDGERLOCK_MODE=production');
  return [ensureLocalWebhookSecret(config.dataDir)];
}

export function ensureLocalWebhookSecret(dataDir: string): string {
  const file = localWebhookSecretPath(dataDir);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const secret = (readIfExists(file) ?? publishOnce(file, `whsec_${randomBytes(32).toString('base64url')}\n`, 0o600)).trim();
  // Never echo the content: it is a secret.
  if (!SECRET.test(secret)) throw new Error(`${file} does not hold a webhook secret (whsec_…); delete it to generate a new one`);
  return secret;
}
