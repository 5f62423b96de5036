import Stripe from 'stripe';
import type { Config } from '../config/config';
import { stripeCallDuration, stripeCalls, stripeRateLimited } from '../metrics/metrics';

/**
 * The Stripe client for real Stripe and stripe-mock alike: only host, port and protocol
 * differ. The API version is the one the installed SDK was generated for, so types and
 * requests agree. The SDK does not retry: Temporal's activity retries do, with the
 * idempotency key each activity passes.
 */
export function createStripe(config: Pick<Config, 'stripe'>): Stripe {
  const endpoint = config.stripe.apiUrl ? new URL(config.stripe.apiUrl) : undefined;
  const stripe = new Stripe(config.stripe.secretKey, {
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
  stripe.on('response', observeStripeResponse);
  return stripe;
}

/**
 * `POST /v1/customers/:id/payment_methods`: Stripe's paths alternate collection and id
 * after the version, so every second segment is an id and becomes `:id`; a label never
 * carries one.
 */
export function stripeOperation(method: string, path: string): string {
  const segments = path.split('?')[0]!.split('/').filter((s) => s !== '');
  const template = segments.map((segment, i) => (i > 0 && i % 2 === 0 ? ':id' : /^[a-z0-9_]+$/.test(segment) ? segment : ':id'));
  const operation = `${method.toUpperCase()} /${template.join('/')}`;
  return /^[A-Z]+ [a-z0-9_/:]{1,80}$/.test(operation) ? operation : 'other';
}

/** 2xx ok, 402 declined, 429 rate_limited, another 4xx invalid, 5xx error. */
export function stripeOutcome(status: number): 'ok' | 'declined' | 'rate_limited' | 'invalid' | 'error' {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 402) return 'declined';
  if (status === 429) return 'rate_limited';
  if (status >= 400 && status < 500) return 'invalid';
  return 'error';
}

function observeStripeResponse(event: Stripe.ResponseEvent): void {
  const operation = stripeOperation(event.method, event.path);
  const outcome = stripeOutcome(event.status);
  stripeCalls.inc({ operation, outcome });
  if (outcome === 'rate_limited') stripeRateLimited.inc({ operation });
  stripeCallDuration.observe({ operation }, Math.max(0, event.elapsed) / 1000);
}
