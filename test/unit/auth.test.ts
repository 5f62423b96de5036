import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type JWTPayload, type KeyLike } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalSigningKey, signingKeyPaths, type LocalSigningKey } from '../../src/auth/signing-keys';
import { createTokenVerifier, InvalidTokenError, mintToken, TokenMintingRefusedError } from '../../src/auth/tokens';
import type { Config } from '../../src/config/config';
import { createAuthorizer, requireScope } from '../../src/http/auth';
import { problemErrorHandler } from '../../src/http/problem';
import { createLogger } from '../../src/log';
import { freePort } from '../../src/stack/process';
import { testConfig } from '../support/stack';

const tempDirs: string[] = [];
function tempDataDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-auth-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A server on a free loopback port; resolves with its URL. */
async function listen(handler: http.RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('the API token middleware', () => {
  let config: Config;
  let key: LocalSigningKey;
  let api: Awaited<ReturnType<typeof listen>>;
  const logLines: string[] = [];

  /** Signs `claims` (merged over valid ones) with `signingKey`, by default the data folder's key. */
  async function signed(claims: JWTPayload = {}, signingKey: KeyLike = key.privateKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: config.auth.issuer, aud: config.auth.audience, sub: 'billing-service', scope: 'audit:read', iat: now, exp: now + 300, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid })
      .sign(signingKey);
  }

  function get(route: string, authorization?: string): Promise<Response> {
    return fetch(`${api.url}${route}`, authorization === undefined ? {} : { headers: { authorization } });
  }

  /** The generic refusal: problem+json, RFC 6750 challenge, and nothing of the token in the body. */
  async function expectInvalidToken(res: Response, token: string): Promise<void> {
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    const body = await res.text();
    expect(JSON.parse(body)).toMatchObject({ status: 401, title: 'Unauthorized' });
    for (const part of token.split('.').filter((p) => p.length > 8)) expect(body).not.toContain(part);
  }

  beforeAll(async () => {
    config = testConfig({ LEDGERLOCK_DATA_DIR: tempDataDir() });
    key = await ensureLocalSigningKey(config.dataDir);
    const log = createLogger('debug', {}, (line) => logLines.push(line));
    const authorize = createAuthorizer(config, log);
    const app = express();
    app.get('/v1/audit', ...authorize('audit:read'), (_req, res) => {
      res.json({ subject: res.locals.principal.subject, scopes: res.locals.principal.scopes });
    });
    app.get('/v1/unauthenticated', requireScope('audit:read'), (_req, res) => {
      res.json({ reached: true });
    });
    app.use(problemErrorHandler(log));
    api = await listen(app);
  });
  afterAll(() => api?.close());

  it('answers a request without Authorization with 401 and a bare Bearer challenge', async () => {
    const res = await get('/v1/audit');
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
  });

  it('refuses an Authorization header that is not a bearer token', async () => {
    const token = await signed();
    await expectInvalidToken(await get('/v1/audit', `Basic ${token}`), token);
    await expectInvalidToken(await get('/v1/audit', 'Bearer'), token);
    await expectInvalidToken(await get('/v1/audit', 'Bearer not-a-jwt'), 'not-a-jwt');
  });

  it('lets a valid token with the scope through and hands the handler its principal', async () => {
    const token = await mintToken(config, key, { subject: 'billing-service', scopes: ['audit:read', 'customers:read'], ttlSeconds: 60 });
    const res = await get('/v1/audit', `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ subject: 'billing-service', scopes: ['audit:read', 'customers:read'] });
  });

  it('accepts a lowercase scheme name, as RFC 7235 allows', async () => {
    const res = await get('/v1/audit', `bearer ${await signed()}`);
    expect(res.status).toBe(200);
  });

  it('answers a valid token lacking the scope with 403 naming the scope', async () => {
    const token = await mintToken(config, key, { subject: 'billing-service', scopes: ['customers:read'], ttlSeconds: 60 });
    const res = await get('/v1/audit', `Bearer ${token}`);
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="insufficient_scope", scope="audit:read"');
    const body = await res.text();
    expect(JSON.parse(body)).toMatchObject({ status: 403, title: 'Forbidden', requiredScope: 'audit:read' });
    expect(JSON.parse(body).detail).toContain('audit:read');
    expect(body).not.toContain(token.split('.')[2]);
  });

  it('ignores scopes it does not know instead of refusing the token', async () => {
    const res = await get('/v1/audit', `Bearer ${await signed({ scope: 'ledger:future audit:read  audit:read' })}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { scopes: string[] }).scopes).toEqual(['audit:read']);
  });

  it('refuses an expired token, beyond the clock tolerance', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await signed({ iat: now - 120, exp: now - 30 });
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('refuses a token without exp or without sub', async () => {
    const { exp: _exp, ...withoutExp } = decodeJwt(await signed());
    const noExp = await new SignJWT(withoutExp).setProtectedHeader({ alg: 'ES256' }).sign(key.privateKey);
    await expectInvalidToken(await get('/v1/audit', `Bearer ${noExp}`), noExp);
    const { sub: _sub, ...withoutSub } = decodeJwt(await signed());
    const noSub = await new SignJWT(withoutSub).setProtectedHeader({ alg: 'ES256' }).sign(key.privateKey);
    await expectInvalidToken(await get('/v1/audit', `Bearer ${noSub}`), noSub);
  });

  it('refuses a token for another audience', async () => {
    const token = await mintToken(testConfig({ LEDGERLOCK_DATA_DIR: config.dataDir, AUTH_AUDIENCE: 'another-api' }), key, {
      subject: 'billing-service',
      scopes: ['audit:read'],
      ttlSeconds: 60,
    });
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('refuses a token from another issuer', async () => {
    const token = await mintToken(testConfig({ LEDGERLOCK_DATA_DIR: config.dataDir, AUTH_ISSUER: 'someone-else' }), key, {
      subject: 'billing-service',
      scopes: ['audit:read'],
      ttlSeconds: 60,
    });
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('refuses an unsigned alg "none" token', async () => {
    const claims = decodeJwt(await signed({ scope: 'audit:read keys:rotate' }));
    const token = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url(claims)}.`;
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('refuses a token signed by another key, even one naming our kid', async () => {
    const other = await generateKeyPair('ES256');
    const token = await signed({}, other.privateKey);
    expect(decodeProtectedHeader(token).kid).toBe(key.kid);
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('refuses a token whose payload was changed after signing', async () => {
    const token = await signed({ scope: 'customers:read' });
    const [header, payload, signature] = token.split('.');
    const widened = base64url({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), scope: 'customers:read audit:read' });
    const tampered = `${header}.${widened}.${signature}`;
    await expectInvalidToken(await get('/v1/audit', `Bearer ${tampered}`), tampered);
  });

  it('refuses an HMAC token, whatever its secret', async () => {
    const token = await new SignJWT(decodeJwt(await signed())).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('x'.repeat(32)));
    await expectInvalidToken(await get('/v1/audit', `Bearer ${token}`), token);
  });

  it('logs why a token was refused, never the token', async () => {
    logLines.length = 0;
    const now = Math.floor(Date.now() / 1000);
    const token = await signed({ iat: now - 120, exp: now - 30 });
    expect((await get('/v1/audit', `Bearer ${token}`)).status).toBe(401);
    const logged = logLines.join('\n');
    expect(logged).toContain('ERR_JWT_EXPIRED');
    for (const part of token.split('.')) expect(logged).not.toContain(part);
  });

  it('answers requireScope with 401 when nothing authenticated the request', async () => {
    const res = await get('/v1/unauthenticated', `Bearer ${await signed()}`);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

describe('the local signing key', () => {
  it('is generated once, private file 0600, public file with the kid, and loaded again later', async () => {
    const dataDir = tempDataDir();
    const first = await ensureLocalSigningKey(dataDir);
    const paths = signingKeyPaths(dataDir);
    expect(statSync(paths.privateKey).mode & 0o777).toBe(0o600);
    const publicJwk = JSON.parse(readFileSync(paths.publicKey, 'utf8')) as Record<string, unknown>;
    expect(publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256', kid: first.kid, alg: 'ES256' });
    expect(publicJwk).not.toHaveProperty('d');
    const again = await ensureLocalSigningKey(dataDir);
    expect(again.kid).toBe(first.kid);
    expect(await exportJWK(again.publicKey)).toMatchObject({ x: publicJwk.x, y: publicJwk.y });
  });

  it('ends with one key when several callers race on a fresh data folder, leaving no temp files', async () => {
    const dataDir = tempDataDir();
    const keys = await Promise.all(Array.from({ length: 6 }, () => ensureLocalSigningKey(dataDir)));
    expect(new Set(keys.map((k) => k.kid)).size).toBe(1);
    expect(readdirSync(path.join(dataDir, 'auth')).sort()).toEqual(['signing-key.private.jwk', 'signing-key.public.jwk']);
    const { kid } = JSON.parse(readFileSync(signingKeyPaths(dataDir).publicKey, 'utf8')) as { kid: string };
    expect(kid).toBe(keys[0]!.kid);
  });

  it('names a corrupt key file without echoing its content', async () => {
    const dataDir = tempDataDir();
    await ensureLocalSigningKey(dataDir);
    const file = signingKeyPaths(dataDir).privateKey;
    writeFileSync(file, '{"d":"super-secret-material"');
    const failure = ensureLocalSigningKey(dataDir);
    await expect(failure).rejects.toThrow(file);
    await expect(failure).rejects.not.toThrow('super-secret-material');
  });
});

describe('mintToken', () => {
  it('signs ES256 with the kid and the claims the API checks, a fresh jti each time', async () => {
    const config = testConfig({ LEDGERLOCK_DATA_DIR: tempDataDir() });
    const key = await ensureLocalSigningKey(config.dataDir);
    const options = { subject: 'ops-cli', scopes: ['keys:rotate', 'audit:read'] as const, ttlSeconds: 90 };
    const [token, second] = await Promise.all([mintToken(config, key, options), mintToken(config, key, options)]);
    expect(decodeProtectedHeader(token!)).toMatchObject({ alg: 'ES256', kid: key.kid });
    const claims = decodeJwt(token!);
    expect(claims).toMatchObject({ iss: 'ledgerlock-local', aud: 'ledgerlock-api', sub: 'ops-cli', scope: 'keys:rotate audit:read' });
    expect(claims.exp! - claims.iat!).toBe(90);
    expect(typeof claims.jti).toBe('string');
    expect(decodeJwt(second!).jti).not.toBe(claims.jti);
    expect(await createTokenVerifier(config)(token!)).toEqual({ subject: 'ops-cli', scopes: ['keys:rotate', 'audit:read'] });
  });

  it('refuses in production mode and when the API verifies against a JWKS', async () => {
    const dataDir = tempDataDir();
    const key = await ensureLocalSigningKey(dataDir);
    const options = { subject: 'ops-cli', scopes: ['audit:read'] as const, ttlSeconds: 60 };
    const auth = { issuer: 'https://issuer.example', audience: 'ledgerlock-api', jwksUrl: 'https://issuer.example/jwks' };
    await expect(mintToken({ mode: 'production', auth }, key, options)).rejects.toBeInstanceOf(TokenMintingRefusedError);
    await expect(mintToken({ mode: 'local', auth }, key, options)).rejects.toBeInstanceOf(TokenMintingRefusedError);
  });

  it('refuses a lifetime that is not a positive whole number of seconds', async () => {
    const config = testConfig({ LEDGERLOCK_DATA_DIR: tempDataDir() });
    const key = await ensureLocalSigningKey(config.dataDir);
    for (const ttlSeconds of [0, -5, 1.5, Number.POSITIVE_INFINITY]) {
      await expect(mintToken(config, key, { subject: 'ops-cli', scopes: [], ttlSeconds })).rejects.toBeInstanceOf(RangeError);
    }
  });
});

describe('createTokenVerifier with AUTH_JWKS_URL', () => {
  const issuer = 'https://issuer.test';
  let rsa: { privateKey: KeyLike; publicKey: KeyLike };
  let jwks: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256');
    const published = { keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }] };
    jwks = await listen((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(published));
    });
  });
  afterAll(() => jwks?.close());

  function remoteConfig(jwksUrl: string): Config {
    return testConfig({ LEDGERLOCK_DATA_DIR: tempDataDir(), AUTH_ISSUER: issuer, AUTH_JWKS_URL: jwksUrl });
  }

  function rsaToken(kid: string, signingKey: KeyLike = rsa.privateKey): Promise<string> {
    return new SignJWT({ scope: 'refunds:write' })
      .setProtectedHeader({ alg: 'RS256', kid })
      .setIssuer(issuer)
      .setAudience('ledgerlock-api')
      .setSubject('support-portal')
      .setExpirationTime('2m')
      .sign(signingKey);
  }

  it("accepts a token signed by a key of the issuer's JWKS", async () => {
    const verify = createTokenVerifier(remoteConfig(`${jwks.url}/jwks.json`));
    expect(await verify(await rsaToken('rsa-1'))).toEqual({ subject: 'support-portal', scopes: ['refunds:write'] });
  });

  it('refuses a token whose key is not in the JWKS, and never uses the local key', async () => {
    const config = remoteConfig(`${jwks.url}/jwks.json`);
    const verify = createTokenVerifier(config);
    const stranger = await generateKeyPair('RS256');
    await expect(verify(await rsaToken('rsa-1', stranger.privateKey))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(verify(await rsaToken('rsa-2', stranger.privateKey))).rejects.toBeInstanceOf(InvalidTokenError);
    const local = await ensureLocalSigningKey(config.dataDir);
    const localToken = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid: local.kid }).setIssuer(issuer).setAudience('ledgerlock-api').setExpirationTime('2m').sign(local.privateKey);
    await expect(verify(localToken)).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it('reports an unreachable JWKS as a server failure, not as a bad token', async () => {
    const verify = createTokenVerifier(remoteConfig(`http://127.0.0.1:${await freePort()}/jwks.json`));
    const failure = verify(await rsaToken('rsa-1'));
    await expect(failure).rejects.toThrow();
    await expect(failure).rejects.not.toBeInstanceOf(InvalidTokenError);
  });
});
