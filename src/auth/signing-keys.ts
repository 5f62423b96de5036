import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type KeyLike } from 'jose';
import { publishOnce, readIfExists, writeAtomically } from '../local-files';

/** The only algorithm of locally minted tokens. */
export const LOCAL_SIGNING_ALGORITHM = 'ES256';

/** The data folder's token-signing key pair (local mode only; production verifies against the issuer's JWKS). */
export interface LocalSigningKey {
  /** RFC 7638 thumbprint of the public key, sent as the JWS `kid`. */
  readonly kid: string;
  readonly privateKey: KeyLike;
  readonly publicKey: KeyLike;
  /** The public key with `kid`, `alg` and `use`, as written to `signing-key.public.jwk`. */
  readonly publicJwk: JWK;
}

export function signingKeyPaths(dataDir: string): { readonly privateKey: string; readonly publicKey: string } {
  const dir = path.join(dataDir, 'auth');
  return { privateKey: path.join(dir, 'signing-key.private.jwk'), publicKey: path.join(dir, 'signing-key.public.jwk') };
}

/**
 * Loads the data folder's signing key, generating it on first use. The private key file is
 * the single source of truth: it is published with link(2), which fails when the file
 * already exists, so when two processes race the first writer wins and the loser adopts
 * its key. The public file is derived from it and only ever rewritten with identical
 * content, so a plain write-then-rename is enough there.
 */
export async function ensureLocalSigningKey(dataDir: string): Promise<LocalSigningKey> {
  const paths = signingKeyPaths(dataDir);
  mkdirSync(path.dirname(paths.privateKey), { recursive: true, mode: 0o700 });
  const privateJwk = readPrivateJwk(paths.privateKey) ?? (await publishNewPrivateJwk(paths.privateKey));
  const key = await fromPrivateJwk(privateJwk, paths.privateKey);
  writeAtomically(paths.publicKey, `${JSON.stringify(key.publicJwk, null, 2)}\n`, 0o644);
  return key;
}

function readPrivateJwk(file: string): JWK | undefined {
  const text = readIfExists(file);
  return text === undefined ? undefined : parsePrivateJwk(text, file);
}

function parsePrivateJwk(text: string, file: string): JWK {
  try {
    return JSON.parse(text) as JWK;
  } catch {
    // Never echo the content: it is a private key.
    throw new Error(`${file} is not valid JSON; delete it (and its .public.jwk) to generate a new signing key`);
  }
}

/** Generates a key and publishes it, unless another process published first: its key is the one everybody uses. */
async function publishNewPrivateJwk(file: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair(LOCAL_SIGNING_ALGORITHM, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return parsePrivateJwk(publishOnce(file, `${JSON.stringify(jwk, null, 2)}\n`, 0o600), file);
}

async function fromPrivateJwk(jwk: JWK, file: string): Promise<LocalSigningKey> {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d || !jwk.x || !jwk.y) {
    throw new Error(`${file} is not an ES256 (P-256) private JWK; delete it (and its .public.jwk) to generate a new signing key`);
  }
  const bare: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  const kid = await calculateJwkThumbprint(bare, 'sha256');
  const [privateKey, publicKey] = await Promise.all([
    importJWK({ ...bare, d: jwk.d }, LOCAL_SIGNING_ALGORITHM),
    importJWK(bare, LOCAL_SIGNING_ALGORITHM),
  ]);
  return {
    kid,
    privateKey: privateKey as KeyLike,
    publicKey: publicKey as KeyLike,
    publicJwk: { ...bare, kid, alg: LOCAL_SIGNING_ALGORITHM, use: 'sig' },
  };
}
