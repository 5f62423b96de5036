import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../../src/auth/scopes';
import { signingKeyPaths } from '../../src/auth/signing-keys';
import { createTokenVerifier } from '../../src/auth/tokens';
import { spawnCli } from '../support/spawn';
import { testConfig, testEnv } from '../support/stack';

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-token-cli-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function runToken(args: string[], env: Record<string, string> = {}) {
  const cli = spawnCli(['token', ...args], testEnv({ LEDGERLOCK_DATA_DIR: dataDir, ...env }));
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

describe('ledgerlock token', () => {
  it('prints only a token that the API verifier accepts, with the scopes and lifetime asked for', async () => {
    const { code, stdout, stderr } = await runToken(['--sub', 'billing-service', '--scopes', 'audit:read,customers:read', '--ttl', '120']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = stdout.trim();
    const principal = await createTokenVerifier(testConfig({ LEDGERLOCK_DATA_DIR: dataDir }))(token);
    expect(principal).toEqual({ subject: 'billing-service', scopes: ['audit:read', 'customers:read'] });
    const claims = decodeJwt(token);
    expect(claims.exp! - claims.iat!).toBe(120);
  });

  it('signs every token with the same data folder key', async () => {
    const first = await runToken(['--sub', 'a', '--scopes', 'keys:rotate']);
    const second = await runToken(['--sub', 'b', '--scopes', 'refunds:write']);
    expect([first.code, second.code]).toEqual([0, 0]);
    const verify = createTokenVerifier(testConfig({ LEDGERLOCK_DATA_DIR: dataDir }));
    expect((await verify(first.stdout.trim())).subject).toBe('a');
    expect((await verify(second.stdout.trim())).subject).toBe('b');
    // The default lifetime is an hour.
    const claims = decodeJwt(first.stdout.trim());
    expect(claims.exp! - claims.iat!).toBe(3600);
  });

  it('names an unknown scope and lists the valid ones, printing no token', async () => {
    const { code, stdout, stderr } = await runToken(['--sub', 'billing-service', '--scopes', 'audit:read,audit:write']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toContain('unknown scope: audit:write');
    for (const scope of SCOPES) expect(stderr).toContain(scope);
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('requires --sub and a whole-second --ttl', async () => {
    const noSub = await runToken(['--scopes', 'audit:read']);
    expect(noSub.code).toBe(1);
    expect(noSub.stderr).toContain('--sub');
    const badTtl = await runToken(['--sub', 'x', '--scopes', 'audit:read', '--ttl', '1.5']);
    expect(badTtl.code).toBe(1);
    expect(badTtl.stderr).toContain('--ttl');
    expect(noSub.stdout + badTtl.stdout).toBe('');
  });

  it('refuses in production mode without creating a signing key', async () => {
    const productionDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-token-prod-'));
    try {
      const { code, stdout, stderr } = await runToken(['--sub', 'x', '--scopes', 'audit:read'], {
        LEDGERLOCK_MODE: 'production',
        LEDGERLOCK_DATA_DIR: productionDir,
        STRIPE_SECRET_KEY: 'sk_test_ProductionLike',
        STRIPE_WEBHOOK_SECRET: 'whsec_ProductionLike0123456789',
        AWS_REGION: 'eu-west-1',
        AUTH_ISSUER: 'https://issuer.test',
        AUTH_JWKS_URL: 'https://issuer.test/jwks.json',
        CODEC_CORS_ORIGINS: 'https://temporal-ui.test',
        DATABASE_APP_URL: 'postgres://ledgerlock_app@db.test:5432/ledgerlock',
        AUDIT_CHECKPOINT_DIR: path.join(productionDir, 'checkpoints'),
        API_TLS_TERMINATED_BY: 'proxy',
        TEMPORAL_API_KEY: 'test-api-key',
      });
      expect(code).toBe(1);
      expect(stdout).toBe('');
      expect(stderr).toContain('local mode');
      expect(existsSync(signingKeyPaths(productionDir).privateKey)).toBe(false);
    } finally {
      rmSync(productionDir, { recursive: true, force: true });
    }
  });
});
