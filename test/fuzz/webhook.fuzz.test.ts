import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { signStripePayload, verifyStripeSignature, type SignatureRejection } from '../../src/webhooks/signature';
import { HANDLED_EVENT_TYPES, MalformedStripeEvent, routeStripeEvent, stripeEventSchema } from '../../src/webhooks/stripe-event-routing';
import { SUBSCRIPTION_METADATA_KEY } from '../../activities/subscriptions';
import { newSubscriptionId } from '../support/stripe-events';

/**
 * Property tests of the webhook's parsers: the Stripe-Signature header against arbitrary
 * headers and bodies, and event routing against arbitrary JSON. Nothing may throw except
 * the typed refusal, and every valid signature must verify.
 */

const REASONS: readonly SignatureRejection[] = ['missing signature header', 'malformed signature header', 'no v1 signature', 'timestamp outside tolerance', 'no matching signature'];
const NOW = 1_790_000_000;

const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
/** Header parts shaped like Stripe's, and not. */
const headerPart = fc.oneof(
  fc.integer({ min: NOW - 1000, max: NOW + 1000 }).map((t) => `t=${t}`),
  fc.string().map((t) => `t=${t}`),
  hex64.map((h) => `v1=${h}`),
  fc.string().map((v) => `v1=${v}`),
  hex64.map((h) => `v0=${h}`),
  fc.string(),
  fc.string({ unit: 'binary' }),
);
const header = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.array(headerPart, { maxLength: 6 }).map((parts) => parts.join(',')), fc.constant(undefined));
const body = fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b));
const secrets = fc.array(fc.string({ minLength: 1 }), { minLength: 1, maxLength: 3 });

describe('Stripe-Signature verification (property)', () => {
  it('answers every header and body with a verdict, never an exception', () => {
    fc.assert(
      fc.property(body, header, secrets, (raw, value, keys) => {
        const verdict = verifyStripeSignature(raw, value, keys, NOW);
        if (!verdict.ok) expect(REASONS).toContain(verdict.reason);
      }),
      { numRuns: 3000 },
    );
  });

  it('verifies a valid signature over any body, with any of the secrets, and refuses it under another body or secret', () => {
    fc.assert(
      fc.property(body, secrets, fc.integer({ min: -300, max: 300 }), fc.nat({ max: 2 }), (raw, keys, skew, which) => {
        const signed = keys[which % keys.length]!;
        const headerValue = signStripePayload(raw, [signed], NOW + skew);
        expect(verifyStripeSignature(raw, headerValue, keys, NOW)).toEqual({ ok: true, timestamp: NOW + skew });
        expect(verifyStripeSignature(Buffer.concat([raw, Buffer.from([0])]), headerValue, keys, NOW)).toEqual({ ok: false, reason: 'no matching signature' });
        expect(verifyStripeSignature(raw, headerValue, keys.map((k) => `${k}x`), NOW)).toEqual({ ok: false, reason: 'no matching signature' });
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses a valid signature outside the tolerance', () => {
    fc.assert(
      fc.property(body, secrets, fc.integer({ min: 301, max: 10_000_000 }), fc.boolean(), (raw, keys, skew, ahead) => {
        const headerValue = signStripePayload(raw, keys, NOW + (ahead ? skew : -skew));
        expect(verifyStripeSignature(raw, headerValue, keys, NOW)).toEqual({ ok: false, reason: 'timestamp outside tolerance' });
      }),
      { numRuns: 300 },
    );
  });
});

/** Values a field may hold: anything JSON, and sometimes the right shape. */
const anyJson = fc.jsonValue({ maxDepth: 3 });
const maybe = <T>(good: fc.Arbitrary<T>) => fc.oneof({ arbitrary: good, weight: 6 }, { arbitrary: anyJson, weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 });
const ourMetadata = fc.oneof(
  fc.constant({ [SUBSCRIPTION_METADATA_KEY]: newSubscriptionId() }),
  fc.dictionary(fc.string(), fc.string()),
  anyJson,
  fc.constant(null),
);
const stripeIdArb = (prefix: string) => fc.oneof(fc.stringMatching(/^[A-Za-z0-9_]{1,20}$/).map((s) => `${prefix}_${s}`), fc.string());
const dataObject = fc.record(
  {
    id: maybe(fc.oneof(stripeIdArb('in'), stripeIdArb('sub'))),
    billing_reason: maybe(fc.constantFrom('subscription_create', 'subscription_cycle', null)),
    amount_paid: maybe(fc.oneof(fc.integer(), fc.double())),
    currency: maybe(fc.constantFrom('eur', 'USD', 'e1r', '')),
    next_payment_attempt: maybe(fc.oneof(fc.integer(), fc.constant(null))),
    parent: maybe(fc.record({ subscription_details: maybe(fc.record({ metadata: ourMetadata })) })),
    subscription_details: maybe(fc.record({ metadata: ourMetadata })),
    metadata: ourMetadata,
    default_payment_method: maybe(fc.oneof(stripeIdArb('pm'), stripeIdArb('pm').map((id) => ({ id })), fc.constant(null))),
  },
  { requiredKeys: [] },
);
const event = fc.record(
  {
    id: maybe(stripeIdArb('evt')),
    object: maybe(fc.constant('event')),
    type: maybe(fc.oneof(fc.constantFrom(...HANDLED_EVENT_TYPES), fc.stringMatching(/^[a-z_]{1,8}(\.[a-z_]{1,8}){1,2}$/))),
    created: maybe(fc.nat()),
    livemode: maybe(fc.boolean()),
    data: maybe(fc.record({ object: fc.oneof({ arbitrary: dataObject, weight: 6 }, { arbitrary: anyJson, weight: 1 }), previous_attributes: maybe(fc.dictionary(fc.constantFrom('default_payment_method', 'status', 'x'), anyJson)) }, { requiredKeys: ['object'] })),
  },
  { requiredKeys: [] },
);

/** What the webhook route does with a verified body: parse the envelope, then route. */
function routeBody(json: unknown): 'refused' | 'routed' {
  const parsed = stripeEventSchema.safeParse(json);
  if (!parsed.success) return 'refused';
  try {
    const route = routeStripeEvent(parsed.data);
    if (route.kind === 'signal') expect(route.workflowId).toBe(`subscription:${route.subscriptionId}`);
    else expect(['unhandled event type', 'not a Ledgerlock subscription', 'no change Ledgerlock acts on']).toContain(route.reason);
    return 'routed';
  } catch (err) {
    expect(err).toBeInstanceOf(MalformedStripeEvent);
    expect((err as MalformedStripeEvent).field).toMatch(/^data\.object/);
    return 'refused';
  }
}

describe('Stripe event routing (property)', () => {
  it('routes, ignores or refuses (typed) any JSON body', () => {
    fc.assert(fc.property(fc.jsonValue(), (json) => void routeBody(json)), { numRuns: 1500 });
  });

  it('routes, ignores or refuses (typed) any event-shaped body, and routes a fair share', () => {
    const outcomes = { refused: 0, routed: 0 };
    fc.assert(
      fc.property(event, (candidate) => {
        // Through JSON, as the route sees it: undefined fields vanish.
        outcomes[routeBody(JSON.parse(JSON.stringify(candidate)))] += 1;
      }),
      { numRuns: 2500 },
    );
    expect(outcomes.routed).toBeGreaterThan(0);
  });
});
