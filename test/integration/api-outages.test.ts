import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { freePort } from '../../src/stack/process';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';
import { invoiceEvent, newSubscriptionId, signedHeaders, TEST_WEBHOOK_SECRET } from '../support/stripe-events';
import { tokenFor } from '../support/tokens';

/**
 * The API with one dependency down (a port nothing listens on): it starts anyway, a
 * request that needs the dependency is a 503 problem naming it with Retry-After, and what
 * does not need it (webhooks, which only need PostgreSQL) keeps working.
 */
describe.each([
  { dependency: 'temporal', variable: 'TEMPORAL_ADDRESS', value: (port: number) => `127.0.0.1:${port}` },
  { dependency: 'kms', variable: 'KMS_ENDPOINT', value: (port: number) => `http://127.0.0.1:${port}` },
  { dependency: 'postgres', variable: 'DATABASE_URL', value: (port: number) => `postgres://127.0.0.1:${port}/nowhere` },
])('the API while $dependency is down', ({ dependency, variable, value }) => {
  let api: RunningServer & { services: Services };
  let writer: string;
  let reader: string;

  beforeAll(async () => {
    const config = testConfig({ [variable]: value(await freePort()), STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET });
    api = await startTestApi(config);
    writer = await tokenFor(config, 'svc-signup', ['customers:write']);
    reader = await tokenFor(config, 'svc-support', ['customers:read']);
  });
  afterAll(() => api?.stop());

  const expectOutage = async (res: Response, down: string) => {
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const body = (await res.json()) as { dependency: string; detail: string };
    expect(body.dependency).toBe(down);
    // Named, never described: no address, port or SDK message.
    expect(body.detail).not.toMatch(/127\.0\.0\.1|ECONN|:\d{2,5}/);
  };

  it('answers a registration that needs it with 503 naming it', async () => {
    const res = await fetch(`${api.url}/v1/customers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${writer}`, 'idempotency-key': `outage-${dependency}` },
      body: JSON.stringify({ email: 'outage@example.com', name: 'Out Age', country: 'DE' }),
    });
    await expectOutage(res, dependency);
  });

  it('acknowledges webhooks unless PostgreSQL, where they are recorded, is what is down', async () => {
    const body = JSON.stringify(invoiceEvent({ type: 'invoice.paid', subscriptionId: newSubscriptionId() }));
    const res = await fetch(`${api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body), body });
    if (dependency === 'postgres') {
      // Not acknowledged: Stripe redelivers it once we can record it.
      await expectOutage(res, 'postgres');
      const read = await fetch(`${api.url}/v1/customers/cust_${'0'.repeat(32)}`, { headers: { authorization: `Bearer ${reader}`, 'ledgerlock-purpose': 'outage check' } });
      await expectOutage(read, 'postgres');
    } else {
      expect(res.status).toBe(200);
    }
  });

  it('reports it down on /readyz, and only it', async () => {
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(503);
    const report = (await res.json()) as { dependencies: Record<string, { status: string }> };
    expect(Object.entries(report.dependencies).filter(([, d]) => d.status === 'down').map(([name]) => name)).toEqual([dependency]);
  });
});
