import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Stripe's webhook signature scheme: the `Stripe-Signature` header carries a timestamp
 * `t` and one or more `v1` signatures, each HMAC-SHA256 (hex) of `<t>.<raw body>` under
 * an endpoint secret. Several `v1` appear while Stripe rolls an endpoint's secret; we
 * accept a list of secrets for the same reason on our side. Other schemes (`v0`) are
 * ignored, as Stripe's own libraries do.
 */

/** Stripe's default: a signature older (or further ahead) than this is refused, against replays. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

export const SIGNATURE_HEADER = 'stripe-signature';

/** Why a delivery was refused: logged as is, so it must never carry the payload. */
export type SignatureRejection =
  | 'missing signature header'
  | 'malformed signature header'
  | 'no v1 signature'
  | 'timestamp outside tolerance'
  | 'no matching signature';

export type SignatureVerdict = { readonly ok: true; readonly timestamp: number } | { readonly ok: false; readonly reason: SignatureRejection };

const HEX_SHA256 = /^[0-9a-f]{64}$/;

export function verifyStripeSignature(
  rawBody: Buffer,
  header: string | undefined,
  secrets: readonly string[],
  nowSeconds: number = Math.floor(Date.now() / 1000),
  toleranceSeconds: number = SIGNATURE_TOLERANCE_SECONDS,
): SignatureVerdict {
  if (header === undefined || header.trim() === '') return { ok: false, reason: 'missing signature header' };
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed signature header' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (!/^\d{1,12}$/.test(value) || timestamp !== undefined) return { ok: false, reason: 'malformed signature header' };
      timestamp = Number(value);
    } else if (key === 'v1' && HEX_SHA256.test(value)) {
      signatures.push(Buffer.from(value, 'hex'));
    }
  }
  if (timestamp === undefined) return { ok: false, reason: 'malformed signature header' };
  if (signatures.length === 0) return { ok: false, reason: 'no v1 signature' };
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: 'timestamp outside tolerance' };

  // Every secret against every signature, without stopping early: the time taken says nothing about which matched.
  let matched = false;
  for (const secret of secrets) {
    const expected = hmac(secret, timestamp, rawBody);
    for (const signature of signatures) matched = timingSafeEqual(expected, signature) || matched;
  }
  return matched ? { ok: true, timestamp } : { ok: false, reason: 'no matching signature' };
}

/** The header Stripe would send for `rawBody` at `timestamp`: one `v1` per secret. For the local trigger and tests. */
export function signStripePayload(rawBody: Buffer | string, secrets: readonly string[], timestamp: number = Math.floor(Date.now() / 1000)): string {
  const body = typeof rawBody === 'string' ? Buffer.from(rawBody) : rawBody;
  return [`t=${timestamp}`, ...secrets.map((secret) => `v1=${hmac(secret, timestamp, body).toString('hex')}`)].join(',');
}

function hmac(secret: string, timestamp: number, rawBody: Buffer): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest();
}
