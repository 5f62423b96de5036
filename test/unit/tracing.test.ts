import { SpanKind, SpanStatusCode, type Context } from '@opentelemetry/api';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { OpaqueAttributesProcessor, stripePathTemplate } from '../../src/tracing/tracing';

function ended(kind: SpanKind, attributes: Record<string, unknown>, events: ReadableSpan['events'] = [], message?: string): ReadableSpan {
  return { kind, attributes, events, status: { code: SpanStatusCode.ERROR, ...(message ? { message } : {}) } } as unknown as ReadableSpan;
}

function exported(span: ReadableSpan): ReadableSpan {
  const seen: ReadableSpan[] = [];
  const next: SpanProcessor = {
    onStart: (_span: unknown, _context: Context) => undefined,
    onEnd: (s) => void seen.push(s),
    forceFlush: async () => undefined,
    shutdown: async () => undefined,
  };
  new OpaqueAttributesProcessor(next).onEnd(span);
  return seen[0]!;
}

describe('span attributes before export', () => {
  it('keep the allowlisted opaque ones, cut query strings, and drop addresses, agents, workflow info objects and error text', () => {
    const client = exported(
      ended(
        SpanKind.CLIENT,
        {
          'http.method': 'GET',
          'http.url': 'http://127.0.0.1:12111/v1/customers?email=ada%40example.com',
          'http.target': '/v1/customers?email=ada%40example.com',
          'http.status_code': 200,
          'net.peer.ip': '10.0.0.7',
          'http.user_agent': 'Stripe/v1 NodeBindings/23.1.0',
          workflowId: 'subscription:sub_ll_0123456789abcdef0123',
          memo: { note: 'ada@example.com' },
          lastResult: 'ada@example.com',
          taskQueue: 'ledgerlock',
        },
        [{ name: 'exception', time: [0, 0], attributes: { 'exception.type': 'StripeInvalidRequest', 'exception.message': 'Invalid email: ada@example.com', 'exception.stacktrace': 'at …' } }],
        'Invalid email: ada@example.com',
      ),
    );
    expect(client.attributes).toEqual({
      'http.method': 'GET',
      'http.url': 'http://127.0.0.1:12111/v1/customers',
      'http.target': '/v1/customers',
      'http.status_code': 200,
      workflowId: 'subscription:sub_ll_0123456789abcdef0123',
      taskQueue: 'ledgerlock',
    });
    expect(client.events[0]!.attributes).toEqual({ 'exception.type': 'StripeInvalidRequest' });
    expect(client.status.message).toBeUndefined();
    expect(client.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('drop the raw path of an API request (the caller\'s text) and keep its route', () => {
    const server = exported(ended(SpanKind.SERVER, { 'http.target': '/v1/customers/ada@example.com', 'http.url': 'http://api/v1/customers/ada@example.com', 'http.route': '/v1/customers/:id', 'http.host': 'api' }));
    expect(server.attributes).toEqual({ 'http.route': '/v1/customers/:id' });
  });
});

describe('Stripe span names', () => {
  it('make ids a placeholder and keep resource names', () => {
    expect(stripePathTemplate('/v1/payment_methods/pm_card_visa/attach')).toBe('/v1/payment_methods/{id}/attach');
    expect(stripePathTemplate('/v1/customers/cus_RoMLL4YCbKwSYFM?expand[]=x')).toBe('/v1/customers/{id}');
    expect(stripePathTemplate('/v1/billing_portal/sessions')).toBe('/v1/billing_portal/sessions');
    expect(stripePathTemplate('/v1/invoices/in_1/pay')).toBe('/v1/invoices/{id}/pay');
  });
});
