import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { signStripePayload, verifyStripeSignature } from '../../src/webhooks/signature';

const stripe = new Stripe('sk_test_unused');
const SECRET = 'whsec_current0123456789abcdef';
const NEXT = 'whsec_next0123456789abcdefghij';
const body = Buffer.from(JSON.stringify({ id: 'evt_1', object: 'event' }));
const now = 1_790_000_000;

describe('Stripe webhook signatures', () => {
  it("accepts a header made by Stripe's own library", () => {
    const header = stripe.webhooks.generateTestHeaderString({ payload: body.toString(), secret: SECRET, timestamp: now });
    expect(verifyStripeSignature(body, header, [SECRET], now)).toEqual({ ok: true, timestamp: now });
  });

  it("makes headers Stripe's own library accepts", () => {
    const header = signStripePayload(body, [SECRET], now);
    expect(stripe.webhooks.constructEvent(body, header, SECRET, 300, undefined, now).id).toBe('evt_1');
  });

  it('refuses a body changed after signing, even by one byte', () => {
    const header = signStripePayload(body, [SECRET], now);
    const changed = Buffer.from(body);
    changed[changed.length - 2]! ^= 1;
    expect(verifyStripeSignature(changed, header, [SECRET], now)).toEqual({ ok: false, reason: 'no matching signature' });
  });

  it('accepts any of several v1 signatures, as Stripe sends while an endpoint secret rolls', () => {
    const header = `t=${now},v1=${'0'.repeat(64)},${signStripePayload(body, [SECRET], now).split(',')[1]}`;
    expect(verifyStripeSignature(body, header, [SECRET], now).ok).toBe(true);
  });

  it('accepts any configured secret, so ours can be rotated without downtime', () => {
    const signedWithNext = signStripePayload(body, [NEXT], now);
    expect(verifyStripeSignature(body, signedWithNext, [SECRET], now)).toEqual({ ok: false, reason: 'no matching signature' });
    expect(verifyStripeSignature(body, signedWithNext, [SECRET, NEXT], now).ok).toBe(true);
    expect(verifyStripeSignature(body, signStripePayload(body, [SECRET], now), [SECRET, NEXT], now).ok).toBe(true);
  });

  it('refuses a signature made with a wrong secret', () => {
    expect(verifyStripeSignature(body, signStripePayload(body, ['whsec_attacker0123456789abc'], now), [SECRET], now)).toEqual({ ok: false, reason: 'no matching signature' });
  });

  it('refuses a timestamp more than 300 seconds away, either way, and accepts one at the edge', () => {
    expect(verifyStripeSignature(body, signStripePayload(body, [SECRET], now - 301), [SECRET], now)).toEqual({ ok: false, reason: 'timestamp outside tolerance' });
    expect(verifyStripeSignature(body, signStripePayload(body, [SECRET], now + 301), [SECRET], now)).toEqual({ ok: false, reason: 'timestamp outside tolerance' });
    expect(verifyStripeSignature(body, signStripePayload(body, [SECRET], now - 300), [SECRET], now).ok).toBe(true);
  });

  it('refuses a valid signature whose timestamp was changed (the timestamp is signed)', () => {
    const [, v1] = signStripePayload(body, [SECRET], now - 400).split(',');
    expect(verifyStripeSignature(body, `t=${now},${v1}`, [SECRET], now)).toEqual({ ok: false, reason: 'no matching signature' });
  });

  it('names what is wrong with a missing or malformed header', () => {
    expect(verifyStripeSignature(body, undefined, [SECRET], now)).toEqual({ ok: false, reason: 'missing signature header' });
    expect(verifyStripeSignature(body, '', [SECRET], now)).toEqual({ ok: false, reason: 'missing signature header' });
    expect(verifyStripeSignature(body, 'garbage', [SECRET], now)).toEqual({ ok: false, reason: 'malformed signature header' });
    expect(verifyStripeSignature(body, `v1=${'a'.repeat(64)}`, [SECRET], now)).toEqual({ ok: false, reason: 'malformed signature header' });
    expect(verifyStripeSignature(body, `t=abc,v1=${'a'.repeat(64)}`, [SECRET], now)).toEqual({ ok: false, reason: 'malformed signature header' });
    expect(verifyStripeSignature(body, `t=${now},t=${now},v1=${'a'.repeat(64)}`, [SECRET], now)).toEqual({ ok: false, reason: 'malformed signature header' });
    expect(verifyStripeSignature(body, `t=${now}`, [SECRET], now)).toEqual({ ok: false, reason: 'no v1 signature' });
  });

  it('ignores signatures of other schemes (v0), as Stripe\'s libraries do', () => {
    const [, v1] = signStripePayload(body, [SECRET], now).split(',');
    const v0 = v1!.replace('v1=', 'v0=');
    expect(verifyStripeSignature(body, `t=${now},${v0}`, [SECRET], now)).toEqual({ ok: false, reason: 'no v1 signature' });
  });
});
