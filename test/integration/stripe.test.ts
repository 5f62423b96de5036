import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { createStripe } from '../../src/stripe/stripe-client';
import { testConfig } from '../support/stack';

describe('Stripe SDK against stripe-mock', () => {
  const stripe = createStripe(testConfig());

  it('creates a customer, answered by stripe-mock', async () => {
    const customer = await stripe.customers.create(
      { email: 'probe@example.com', name: 'Probe', metadata: { ledgerlock_customer_id: 'c_123' } },
      { idempotencyKey: 'test-create-customer' },
    );
    expect(customer.object).toBe('customer');
    expect(customer.id).toMatch(/^cus_/);
  });

  it('has requests validated against the API spec: an unknown parameter is refused', async () => {
    const invalid = stripe.customers.create({ email: 'probe@example.com', not_a_stripe_param: true } as Stripe.CustomerCreateParams);
    await expect(invalid).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
  });
});
