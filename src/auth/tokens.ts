import { randomUUID } from 'node:crypto';
import { createRemoteJWKSet, errors, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyOptions } from 'jose';
import type { Config } from '../config/config';
import { isScope, type Principal, type Scope } from './scopes';
import { ensureLocalSigningKey, LOCAL_SIGNING_ALGORITHM, type LocalSigningKey } from './signing-keys';
import { tokenRefusals, type TokenRefusal } from '../metrics/metrics';

/** An explicit list: an issuer's JWKS may hold EC, RSA or Ed25519 keys, but never `none` or an HMAC secret. */
const REMOTE_ALGORITHMS = ['ES256', 'RS256', 'EdDSA'];
/** Enough for clock drift between hosts, short enough that an expired token stays expired. */
const CLOCK_TOLERANCE_SECONDS = 5;
/** Local tokens are for development and scripts; a month bounds what a leaked one is worth. */
export const MAX_LOCAL_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60;

/** The token was not accepted. The message says why, for logs; `reason` says it as a metric label; neither contains the token. */
export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
  constructor(
    message: string,
    readonly reason: TokenRefusal = 'invalid',
  ) {
    super(message);
  }
}

/** jose's error codes as bounded refusal reasons. */
function refusalOf(err: errors.JOSEError): TokenRefusal {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (err instanceof errors.JWTClaimValidationFailed) return 'claims';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown_key';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSEAlgNotAllowed) return 'malformed';
  return 'invalid';
}

/** Counts every refusal of `verify`, by reason, wherever tokens are checked (API and codec server). */
function counted(verify: TokenVerifier): TokenVerifier {
  return async (token) => {
    try {
      return await verify(token);
    } catch (err) {
      if (err instanceof InvalidTokenError) tokenRefusals.inc({ reason: err.reason });
      throw err;
    }
  };
}

/** Minting was refused: the configuration does not accept locally minted tokens. */
export class TokenMintingRefusedError extends Error {
  override name = 'TokenMintingRefusedError';
}

export type TokenVerifier = (token: string) => Promise<Principal>;

export interface MintOptions {
  readonly subject: string;
  readonly scopes: readonly Scope[];
  readonly ttlSeconds: number;
}

type AuthConfig = Pick<Config, 'mode' | 'dataDir' | 'auth'>;

/**
 * Throws unless tokens signed with the data folder's key would be accepted: only in local
 * mode, and only when the API verifies against that key rather than an issuer's JWKS.
 */
export function assertLocalMintingAllowed(config: Pick<Config, 'mode' | 'auth'>): void {
  if (config.mode !== 'local') {
    throw new TokenMintingRefusedError('tokens are minted only in local mode; in production the issuer behind AUTH_JWKS_URL issues them');
  }
  if (config.auth.jwksUrl !== undefined) {
    throw new TokenMintingRefusedError('AUTH_JWKS_URL is set, so the API would not accept a locally minted token; get one from that issuer');
  }
}

/** Signs a service token with the data folder's key (local mode only). */
export async function mintToken(config: Pick<Config, 'mode' | 'auth'>, key: LocalSigningKey, options: MintOptions): Promise<string> {
  assertLocalMintingAllowed(config);
  const subject = options.subject.trim();
  if (subject === '') throw new RangeError('the token subject must not be empty');
  if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds < 1 || options.ttlSeconds > MAX_LOCAL_TOKEN_TTL_SECONDS) {
    throw new RangeError(`the token lifetime must be a whole number of seconds from 1 to ${MAX_LOCAL_TOKEN_TTL_SECONDS}`);
  }
  const issuedAt = Math.floor(Date.now() / 1000);
  return new SignJWT({ scope: [...new Set(options.scopes)].join(' ') })
    .setProtectedHeader({ alg: LOCAL_SIGNING_ALGORITHM, kid: key.kid, typ: 'JWT' })
    .setIssuer(config.auth.issuer)
    .setAudience(config.auth.audience)
    .setSubject(subject)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + options.ttlSeconds)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

/**
 * The API's token check: signature (against the issuer's JWKS when AUTH_JWKS_URL is set,
 * else the data folder's public key), issuer, audience, expiry and subject.
 *
 * Rejections are {@link InvalidTokenError}s. Anything else (the JWKS unreachable, the key
 * file unreadable) is the server's fault and propagates as is.
 */
export function createTokenVerifier(config: AuthConfig): TokenVerifier {
  const claims: JWTVerifyOptions = {
    issuer: config.auth.issuer,
    audience: config.auth.audience,
    requiredClaims: ['exp', 'sub'],
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
  };

  if (config.auth.jwksUrl !== undefined) {
    const jwks = createRemoteJWKSet(new URL(config.auth.jwksUrl));
    const options = { ...claims, algorithms: REMOTE_ALGORITHMS };
    return counted(async (token) => toPrincipal(await rejectAsInvalid(() => jwtVerify(token, jwks, options))));
  }

  if (config.mode !== 'local') throw new Error('production verifies tokens against AUTH_JWKS_URL, which is not set');
  const options = { ...claims, algorithms: [LOCAL_SIGNING_ALGORITHM] };
  let loading: Promise<LocalSigningKey> | undefined;
  const localKey = () => {
    // Loaded once; a failed load is retried on the next request rather than cached.
    loading ??= ensureLocalSigningKey(config.dataDir).catch((err) => {
      loading = undefined;
      throw err;
    });
    return loading;
  };
  return counted(async (token) => {
    const { publicKey } = await localKey();
    return toPrincipal(await rejectAsInvalid(() => jwtVerify(token, publicKey, options)));
  });
}

/** jose's verdicts on the token become InvalidTokenError; a JWKS that cannot be fetched or parsed is not the caller's fault. */
async function rejectAsInvalid<T>(verify: () => Promise<T>): Promise<T> {
  try {
    return await verify();
  } catch (err) {
    const serverSide = err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || err instanceof errors.JWKInvalid;
    if (err instanceof errors.JOSEError && !serverSide) throw new InvalidTokenError(`${err.code}: ${err.message}`, refusalOf(err));
    throw err;
  }
}

function toPrincipal({ payload }: { payload: JWTPayload }): Principal {
  // requiredClaims only checks presence.
  if (typeof payload.sub !== 'string' || payload.sub.trim() === '') throw new InvalidTokenError('the "sub" claim must be a non-empty string', 'claims');
  const scope = payload.scope ?? '';
  if (typeof scope !== 'string') throw new InvalidTokenError('the "scope" claim must be a space-separated string', 'claims');
  // Scopes this version does not know grant nothing, so an issuer may add new ones first.
  const scopes = [...new Set(scope.split(' ').filter(isScope))];
  return { subject: payload.sub, scopes };
}
