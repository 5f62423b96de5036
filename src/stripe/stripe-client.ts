import Stripe from 'stripe';
import type { Config } from '../config/config';

/**
 * The Stripe client for real Stripe and stripe-mock alike: only host, port and protocol
 * differ. The API version is the one the installed SDK was generated for, so types and
 * requests agree. The SDK does not retry: Temporal's activity retries do, with the
 * idempotency key each activity passes.
 */
export function createStripe(config: Pick<Config, 'stripe'>): Stripe {
  const endpoint = config.stripe.apiUrl ? new URL(config.stripe.apiUrl) : undefined;
  return new Stripe(config.stripe.secretKey, {
    maxNetworkRetries: 0,
    timeout: 20_000,
    telemetry: false,
    appInfo: { name: 'ledgerlock' },
    ...(endpoint
      ? {
          host: endpoint.hostname,
          port: endpoint.port || (endpoint.protocol === 'https:' ? 443 : 80),
          protocol: endpoint.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
  });
}
