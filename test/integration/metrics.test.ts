import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuditActivities } from '../../activities/audit';
import { loadConfig } from '../../src/config/config';
import { createDb } from '../../src/db/database';
import { registry } from '../../src/metrics/metrics';
import { freePort } from '../../src/stack/process';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { testConfig, testEnv } from '../support/stack';
import { referencedMetricNames } from '../support/deploy-metrics';
import { tokenFor } from '../support/tokens';

/** One sample's value from Prometheus text: the line `name{labels} value` whose labels include every one given. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

/**
 * The metrics of a real `ledgerlock app` process (API, workers and codec server, as `npm
 * start` runs it) against this run's Temporal dev server, local-kms, stripe-mock and
 * PostgreSQL: a customer registered and erased through the API moves the saga, Stripe,
 * KMS, data-key cache and audit counters; a forged webhook, an anonymous and a garbled
 * token move the refusal counters. All on the metrics port, none on the API's.
 */
describe('metrics of a running app process', () => {
  let app: SpawnedCli;
  let env: Record<string, string>;
  let api: string;
  let metricsUrl: string;
  const scrape = async () => {
    const res = await fetch(metricsUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };

  beforeAll(async () => {
    const [apiPort, codecPort, metricsPort] = await Promise.all([freePort(), freePort(), freePort()]);
    env = testEnv({
      API_PORT: String(apiPort),
      CODEC_PORT: String(codecPort),
      METRICS_PORT: String(metricsPort),
      // A task queue of its own: no other test's worker takes these workflows.
      TEMPORAL_TASK_QUEUE: `metrics-${randomUUID()}`,
      LOG_LEVEL: 'info',
    });
    api = `http://127.0.0.1:${apiPort}`;
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    app = spawnCli(['app'], env);
    await app.waitFor('"msg":"api listening"', 110_000);
  }, 120_000);

  afterAll(async () => {
    app?.child.kill('SIGTERM');
    await app?.exited;
  });

  it('serves ledgerlock_ and temporal_ metrics on its own port after a real flow, never on the API port', async () => {
    const config = loadConfig(env);
    const writer = await tokenFor(config, 'svc-metrics', ['customers:write', 'customers:read']);
    const eraser = await tokenFor(config, 'svc-metrics-privacy', ['customers:erase']);
    const probe = `metrics-probe-${randomUUID()}@example.com`;
    const before = await scrape();
    expect(sample(before, 'ledgerlock_saga_completed_total', { saga: 'customer_registration' }) ?? 0).toBe(0);

    const created = await fetch(`${api}/v1/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: JSON.stringify({ email: probe, name: 'Metric Person', country: 'DE' }),
    });
    expect(created.status).toBe(202);
    const { customerId } = (await created.json()) as { customerId: string };
    await vi.waitFor(
      async () => {
        const res = await fetch(`${api}/v1/customers/${customerId}`, { headers: { authorization: `Bearer ${writer}`, 'ledgerlock-purpose': 'metrics test' } });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { stripeCustomerId: string | null }).stripeCustomerId).toMatch(/^cus_/);
      },
      { timeout: 30_000, interval: 250 },
    );
    const erased = await fetch(`${api}/v1/customers/${customerId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${eraser}`, 'ledgerlock-purpose': 'metrics test erasure' },
    });
    expect(erased.status).toBe(202);
    await vi.waitFor(async () => expect((await fetch(`${api}/v1/customers/${customerId}`, { headers: { authorization: `Bearer ${writer}`, 'ledgerlock-purpose': 'metrics test' } })).status).toBe(410), {
      timeout: 30_000,
      interval: 250,
    });

    // Refusals: no token, a garbled one, a webhook signed by nobody.
    expect((await fetch(`${api}/v1/customers/${customerId}`)).status).toBe(401);
    expect((await fetch(`${api}/v1/customers/${customerId}`, { headers: { authorization: 'Bearer not.a.jwt' } })).status).toBe(401);
    const forged = await fetch(`${api}${STRIPE_WEBHOOK_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': 't=1,v1=00' },
      body: JSON.stringify({ id: 'evt_forged', type: 'invoice.paid' }),
    });
    expect(forged.status).toBe(400);

    // The erasure saga completes after its API answer: wait for its counter rather than guess.
    const text = await vi.waitFor(
      async () => {
        const body = await scrape();
        expect(sample(body, 'ledgerlock_saga_completed_total', { saga: 'erasure' })).toBe(1);
        return body;
      },
      { timeout: 20_000, interval: 500 },
    );

    expect(sample(text, 'ledgerlock_saga_started_total', { saga: 'customer_registration' })).toBe(1);
    expect(sample(text, 'ledgerlock_saga_completed_total', { saga: 'customer_registration' })).toBe(1);
    expect(sample(text, 'ledgerlock_saga_started_total', { saga: 'erasure' })).toBe(1);
    expect(sample(text, 'ledgerlock_saga_step_duration_seconds_count', { saga: 'customer_registration', step: 'storeCustomer', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'ledgerlock_saga_step_duration_seconds_count', { saga: 'customer_registration', step: 'createStripeCustomer', outcome: 'ok' })).toBe(1);
    expect(sample(text, 'ledgerlock_stripe_calls_total', { operation: 'POST /v1/customers', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'ledgerlock_stripe_calls_total', { operation: 'DELETE /v1/customers/:id', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'ledgerlock_kms_calls_total', { operation: 'GenerateDataKey', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'ledgerlock_kms_calls_total', { operation: 'Decrypt', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect((sample(text, 'ledgerlock_data_key_cache_hits_total') ?? 0) + (sample(text, 'ledgerlock_data_key_cache_misses_total') ?? 0)).toBeGreaterThan(0);
    expect(sample(text, 'ledgerlock_audit_appends_total', { outcome: 'appended' })).toBeGreaterThanOrEqual(4);
    expect(sample(text, 'ledgerlock_token_refusals_total', { reason: 'missing' })).toBe(1);
    expect(sample(text, 'ledgerlock_token_refusals_total', { reason: 'malformed' })).toBe(1);
    expect(sample(text, 'ledgerlock_webhooks_total', { outcome: 'refused', reason: 'signature' })).toBe(1);
    // From PostgreSQL: nothing waits in the relay's outbox.
    expect(sample(text, 'ledgerlock_webhook_relay_pending')).toBe(0);
    expect(sample(text, 'ledgerlock_key_rotation_running')).toBe(0);
    // The process's own, and the Temporal SDK's runtime metrics merged in.
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(text).toMatch(/^temporal_[a-z_]+(\{[^}]*\})? /m);
    expect(sample(text, 'temporal_workflow_completed', { workflow_type: 'eraseCustomerWorkflow' })).toBe(1);
    // Every SDK metric the alerts and the dashboard read is one this SDK serves.
    const temporalReferenced = referencedMetricNames().filter((n) => n.startsWith('temporal_'));
    expect(temporalReferenced.length).toBeGreaterThan(3);
    for (const name of temporalReferenced) expect(text, name).toContain(`# TYPE ${name.replace(/_(bucket|count|sum)$/, '')} `);

    // Labels are bounded names: no customer id, no email, no Stripe id, no token.
    expect(text).not.toContain(customerId);
    expect(text).not.toContain(probe);
    expect(text).not.toMatch(/cus_[A-Za-z0-9]/);
    expect(text).not.toContain(writer);

    // The public API listener has no metrics.
    const onApi = await fetch(`${api}/metrics`);
    expect(onApi.status).toBe(404);
    expect(await onApi.text()).not.toContain('ledgerlock_');
  });

  it('counts an audited milestone once however often its activity is retried (recordAudit on the real audit trail)', async () => {
    const db = createDb(testConfig().databaseAppUrl, { max: 1 });
    try {
      const { recordAudit } = createAuditActivities({ db });
      const counted = async () => (await registry.getSingleMetric('ledgerlock_dunning_campaigns_total')!.get()).values.find((v) => v.labels.state === 'started')?.value ?? 0;
      const before = await counted();
      const subscriptionId = `sub_ll_${randomUUID().replace(/-/g, '')}`;
      const workflowId = `dunning:${subscriptionId}:in_metrics`;
      const entry = {
        idempotencyKey: `${workflowId}:dunning.started:campaign`,
        actor: `workflow:${workflowId}`,
        action: 'dunning.started',
        subjectType: 'subscription',
        subjectId: subscriptionId,
        details: { invoiceId: 'in_metrics', attempt: 0 },
        occurredAt: '2026-12-03T00:00:00.000Z',
      };
      const first = await recordAudit(entry);
      // A retried attempt (or a replayed workflow) appends nothing and counts nothing.
      expect(await recordAudit(entry)).toEqual(first);
      expect(await counted()).toBe(before + 1);
    } finally {
      await db.destroy();
    }
  });
});
