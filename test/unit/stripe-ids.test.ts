import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config';
import { stripeIdPattern } from '../../src/stripe/stripe-ids';
import { createSubscriptionBody } from '../../src/subscriptions/subscription-routes';

/** One grammar for Stripe ids: what configuration accepts, the API accepts too. */
describe('Stripe ids', () => {
  it('accepts ids with underscores, as test mode and config keys have them, and refuses other prefixes and characters', () => {
    for (const id of ['price_1MoBy5LkdIwHu7ixZhnattbh', 'price_pro_eu']) expect(stripeIdPattern('price').test(id)).toBe(true);
    expect(stripeIdPattern('pm').test('pm_card_visa')).toBe(true);
    expect(stripeIdPattern('in').test('in_1Abc_2')).toBe(true);
    for (const id of ['price_', 'prices_x', 'price_a-b', 'price_a b', ' price_a', `price_${'a'.repeat(251)}`, 'price_x\n']) expect(stripeIdPattern('price').test(id)).toBe(false);
  });

  it('a DUNNING_POLICY_BY_PRICE key is a price the subscription route accepts (they once disagreed on underscores)', () => {
    const config = loadConfig({ DUNNING_POLICY_BY_PRICE: JSON.stringify({ price_pro_eu: { maxAttempts: 2 } }) }, '/srv/ledgerlock');
    const [price] = Object.keys(config.dunning.byPrice);
    const body = {
      customer: { email: 'a@example.com', name: 'A', country: 'DE' },
      priceId: price,
      paymentMethodId: 'pm_card_visa',
    };
    expect(createSubscriptionBody.safeParse(body).success).toBe(true);
  });
});
