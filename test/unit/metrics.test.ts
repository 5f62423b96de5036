import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { ensureLocalSigningKey } from '../../src/auth/signing-keys';
import { createTokenVerifier, InvalidTokenError, mintToken } from '../../src/auth/tokens';
import { testConfig } from '../support/stack';
import { countAuditedMilestone } from '../../src/metrics/audit-milestones';
import { boundedLabel, currencyLabel, dunningCampaigns, keyRotationDataKeys, oneOf, registry, TOKEN_REFUSALS } from '../../src/metrics/metrics';
import { stripeOperation, stripeOutcome } from '../../src/stripe/stripe-client';

async function value(name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name)!;
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

describe('metric labels', () => {
  it('turns Stripe paths into templates: every id becomes :id, whatever it looks like', () => {
    expect(stripeOperation('post', '/v1/customers')).toBe('POST /v1/customers');
    expect(stripeOperation('DELETE', '/v1/customers/cus_NffrFeUfNV2Hib')).toBe('DELETE /v1/customers/:id');
    expect(stripeOperation('POST', '/v1/payment_methods/pm_card_visa/attach')).toBe('POST /v1/payment_methods/:id/attach');
    expect(stripeOperation('GET', '/v1/customers/cus_1/payment_methods/pm_2?expand[]=x')).toBe('GET /v1/customers/:id/payment_methods/:id');
    // A collection position holding something that is not a plain name (an email, a secret) is an id too.
    expect(stripeOperation('GET', '/v1/someone@example.com')).toBe('GET /v1/:id');
    expect(stripeOperation('GET', `/v1/${'a'.repeat(200)}`)).toBe('other');
  });

  it('classifies Stripe answers by status', () => {
    expect([200, 402, 429, 400, 404, 500, 503].map(stripeOutcome)).toEqual(['ok', 'declined', 'rate_limited', 'invalid', 'invalid', 'error', 'error']);
  });

  it('lets only name-like values through; anything else is other', () => {
    expect(boundedLabel('CardDeclined')).toBe('CardDeclined');
    expect(boundedLabel('storeCustomer')).toBe('storeCustomer');
    for (const leak of ['person@example.com', 'Bearer eyJhbGciOi', 'a message with spaces', '', 'x'.repeat(65), 42, undefined]) expect(boundedLabel(leak)).toBe('other');
    expect(currencyLabel('eur')).toBe('eur');
    expect(currencyLabel('EURO')).toBe('other');
    expect(oneOf(TOKEN_REFUSALS, 'expired')).toBe('expired');
    expect(oneOf(TOKEN_REFUSALS, 'the token was 1234')).toBe('other');
  });
});

describe('audited milestones', () => {
  it('counts dunning states and rotation progress from what workflows audit', async () => {
    const started = await value('ledgerlock_dunning_campaigns_total', { state: 'started' });
    const unpaid = await value('ledgerlock_dunning_campaigns_total', { state: 'unpaid' });
    const rewrapped = await value('ledgerlock_key_rotation_data_keys_total', { phase: 'rewrapped' });
    countAuditedMilestone({ action: 'dunning.started', idempotencyKey: 'dunning:sub_ll_1:in_1:dunning.started:campaign', details: {} });
    countAuditedMilestone({ action: 'dunning.final', idempotencyKey: 'dunning:sub_ll_1:in_1:dunning.final:mark_unpaid', details: { reason: 'retries exhausted' } });
    countAuditedMilestone({ action: 'key.rotation', idempotencyKey: 'rot_1:key.rotation:rewrapped:alias/ledgerlock-eu', details: { step: 'rewrapped:alias/ledgerlock-eu', dataKeys: 7 } });
    // Other entries move nothing.
    countAuditedMilestone({ action: 'customer.read', idempotencyKey: 'req_1', details: {} });
    expect(await value('ledgerlock_dunning_campaigns_total', { state: 'started' })).toBe(started + 1);
    expect(await value('ledgerlock_dunning_campaigns_total', { state: 'unpaid' })).toBe(unpaid + 1);
    expect(await value('ledgerlock_key_rotation_data_keys_total', { phase: 'rewrapped' })).toBe(rewrapped + 7);
    expect(dunningCampaigns).toBeDefined();
    expect(keyRotationDataKeys).toBeDefined();
  });
});

describe('token refusals', () => {
  it('counts each refusal under a reason from the fixed list, never the token', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-metrics-tokens-'));
    try {
      const config = testConfig({ LEDGERLOCK_DATA_DIR: dataDir });
      const key = await ensureLocalSigningKey(dataDir);
      const verify = createTokenVerifier(config);
      const refusal = async (token: string) => {
        const err = await verify(token).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InvalidTokenError);
        return (err as InvalidTokenError).reason;
      };
      const before = Object.fromEntries(await Promise.all(TOKEN_REFUSALS.map(async (r) => [r, await value('ledgerlock_token_refusals_total', { reason: r })] as const)));

      expect(await refusal('not.a.jwt')).toBe('malformed');
      const otherAudience = await mintToken(testConfig({ LEDGERLOCK_DATA_DIR: dataDir, AUTH_AUDIENCE: 'another-api' }), key, { subject: 'svc', scopes: [], ttlSeconds: 60 });
      expect(await refusal(otherAudience)).toBe('claims');
      const forged = await new SignJWT({ sub: 'svc', scope: '' })
        .setProtectedHeader({ alg: 'ES256', kid: key.kid })
        .setIssuer(config.auth.issuer)
        .setAudience(config.auth.audience)
        .setExpirationTime('1m')
        .sign((await generateKeyPair('ES256')).privateKey);
      expect(await refusal(forged)).toBe('bad_signature');

      expect(await value('ledgerlock_token_refusals_total', { reason: 'malformed' })).toBe(before.malformed! + 1);
      expect(await value('ledgerlock_token_refusals_total', { reason: 'claims' })).toBe(before.claims! + 1);
      expect(await value('ledgerlock_token_refusals_total', { reason: 'bad_signature' })).toBe(before.bad_signature! + 1);
      expect(await registry.metrics()).not.toContain(forged.slice(0, 20));
      // A good token is no refusal.
      await verify(await mintToken(config, key, { subject: 'svc', scopes: [], ttlSeconds: 60 }));
      expect(await value('ledgerlock_token_refusals_total', { reason: 'invalid' })).toBe(before.invalid);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
