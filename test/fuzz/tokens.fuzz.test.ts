import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { CompactSign, generateKeyPair, type KeyLike } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../../src/auth/scopes';
import { ensureLocalSigningKey, type LocalSigningKey } from '../../src/auth/signing-keys';
import { createTokenVerifier, InvalidTokenError, type TokenVerifier } from '../../src/auth/tokens';

/**
 * The API's token check against arbitrary strings, headers and claims (alg none, HMAC, a
 * wrong typ, huge exp, non-string scopes): a principal for a valid token, otherwise an
 * InvalidTokenError (a 401), never anything else.
 */

const ISSUER = 'fuzz-issuer';
const AUDIENCE = 'fuzz-audience';
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

let dataDir: string;
let key: LocalSigningKey;
let strangerKey: KeyLike;
let verify: TokenVerifier;

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-fuzz-tokens-'));
  key = await ensureLocalSigningKey(dataDir);
  strangerKey = (await generateKeyPair('ES256')).privateKey;
  verify = createTokenVerifier({ mode: 'local', dataDir, auth: { issuer: ISSUER, audience: AUDIENCE } });
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** The verifier's answer, asserting it is a principal or the typed refusal. */
async function outcome(token: string): Promise<'accepted' | 'refused'> {
  try {
    const principal = await verify(token);
    expect(typeof principal.subject).toBe('string');
    for (const scope of principal.scopes) expect(SCOPES).toContain(scope);
    return 'accepted';
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidTokenError);
    return 'refused';
  }
}

const now = () => Math.floor(Date.now() / 1000);
const anyJson = fc.jsonValue({ maxDepth: 2 });
const weird = <T>(good: fc.Arbitrary<T>) => fc.oneof({ arbitrary: good, weight: 4 }, { arbitrary: anyJson, weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 });
const claims = fc.record(
  {
    iss: weird(fc.constant(ISSUER)),
    aud: weird(fc.oneof(fc.constant(AUDIENCE), fc.constant([AUDIENCE, 'other']))),
    sub: weird(fc.oneof(fc.string(), fc.constant('billing-service'))),
    scope: weird(fc.oneof(fc.constantFrom(...SCOPES), fc.array(fc.constantFrom(...SCOPES)).map((s) => s.join(' ')), fc.array(fc.string()), fc.string())),
    exp: weird(fc.oneof(fc.constant(now() + 300), fc.constant(now() + 300), fc.integer(), fc.double(), fc.constant(1e300), fc.constant(Number.MAX_SAFE_INTEGER))),
    nbf: fc.option(fc.oneof(fc.integer(), fc.double(), fc.string()), { nil: undefined, freq: 2 }),
    iat: fc.option(fc.oneof(fc.integer(), fc.double(), fc.string()), { nil: undefined, freq: 2 }),
  },
  { requiredKeys: [] },
);
const strangeHeader = fc.record(
  {
    typ: fc.oneof(fc.constantFrom('JWT', 'at+jwt', 'JWE', ''), anyJson),
    kid: fc.oneof(fc.string(), anyJson),
    crit: fc.oneof(fc.array(fc.string(), { maxLength: 2 }), anyJson),
    b64: fc.oneof(fc.boolean(), anyJson),
    jku: fc.webUrl(),
  },
  { requiredKeys: [] },
);
const headerExtras = fc.oneof({ arbitrary: fc.constant({}), weight: 2 }, { arbitrary: strangeHeader, weight: 1 });

describe('API token verification (property)', () => {
  it('refuses any string, typed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.array(fc.base64String(), { minLength: 3, maxLength: 3 }).map((p) => p.join('.'))), async (token) => {
        expect(await outcome(token)).toBe('refused');
      }),
      { numRuns: 1500 },
    );
  });

  it('refuses unsigned and forged tokens whatever their header and claims say', async () => {
    const alg = fc.oneof(fc.constantFrom('none', 'None', 'HS256', 'ES256', 'RS256', 'EdDSA', ''), anyJson);
    await fc.assert(
      fc.asyncProperty(alg, headerExtras, fc.oneof(claims, anyJson), fc.oneof(fc.constant(''), fc.base64String()), async (algorithm, extras, payload, signature) => {
        const token = `${b64({ ...extras, alg: algorithm, kid: key.kid })}.${b64(payload)}.${signature.replace(/=/g, '')}`;
        expect(await outcome(token)).toBe('refused');
      }),
      { numRuns: 1000 },
    );
  });

  it('signed with the right key, accepts only well-formed claims and refuses the rest, typed', async () => {
    const tally = { accepted: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(fc.oneof({ arbitrary: claims, weight: 5 }, { arbitrary: anyJson, weight: 1 }), headerExtras, fc.boolean(), async (payload, extras, stranger) => {
        const header = { ...extras, alg: 'ES256', kid: key.kid };
        // `crit` and `b64` change how jose parses; sign what it accepts, the verifier must still be typed.
        let token: string;
        try {
          token = await new CompactSign(Buffer.from(JSON.stringify(payload ?? null))).setProtectedHeader(header as never).sign(stranger ? strangerKey : key.privateKey);
        } catch {
          return;
        }
        const result = await outcome(token);
        tally[result] += 1;
        if (stranger) expect(result).toBe('refused');
        const p = payload as Record<string, unknown> | null;
        if (result === 'accepted') {
          expect(p?.iss).toBe(ISSUER);
          expect(typeof p?.sub === 'string' && p.sub.trim() !== '').toBe(true);
          expect(typeof p?.exp === 'number' && p.exp > now() - 10).toBe(true);
          expect(p?.scope === undefined || typeof p.scope === 'string').toBe(true);
        }
      }),
      { numRuns: 500 },
    );
    expect(tally.accepted).toBeGreaterThan(0);
    expect(tally.refused).toBeGreaterThan(0);
  });
});
