import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { testConfig, testEnv } from '../support/stack';
import { tokenFor } from '../support/tokens';

const SERVER = 2;
const CLIENT = 3;

/**
 * Traces of a real API and a real worker process, exported over OTLP/HTTP to a receiver that
 * decodes the protobuf: one trace from `POST /v1/subscriptions` down to each Stripe and KMS call.
 */
describe('traces', () => {
  const taskQueue = `tracing-${process.pid}`;
  let receiver: OtlpReceiver;
  let api: SpawnedCli;
  let worker: SpawnedCli;
  let apiUrl: string;
  let token: string;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // Exported every 200 ms instead of every 5 s, so the test waits less.
    const env = testEnv({ TEMPORAL_TASK_QUEUE: taskQueue, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '200', API_PORT: '0', LOG_LEVEL: 'info' });
    worker = spawnCli(['worker'], env);
    api = spawnCli(['api'], env);
    await Promise.all([worker.waitFor('worker polling', 60_000), api.waitFor('api listening', 60_000)]);
    const listening = api
      .stdout()
      .split('\n')
      .filter((line) => line.includes('api listening'))
      .map((line) => JSON.parse(line) as { host: string; port: number })[0]!;
    apiUrl = `http://${listening.host}:${listening.port}`;
    token = await tokenFor(testConfig(), 'svc-tracing', ['subscriptions:write', 'subscriptions:read']);
  });
  afterAll(async () => {
    for (const child of [api, worker]) child?.child.kill('SIGTERM');
    await Promise.all([api?.exited, worker?.exited]);
    await receiver?.close();
  });

  it('follow POST /v1/subscriptions through the workflow, each activity and its Stripe and KMS calls, in one trace with opaque attributes only', async () => {
    const tag = randomUUID().slice(0, 8);
    const person = { email: `trace-probe-${tag}@example.com`, name: `Trace Probe ${tag}`, country: 'NL', phone: `+31612${tag.replace(/\D/g, '3').slice(0, 6).padEnd(6, '3')}` };
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const res = await fetch(`${apiUrl}/v1/subscriptions`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': `trace-${tag}` },
      body: JSON.stringify({ customer: person, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }),
    });
    expect(res.status).toBe(202);
    const { subscriptionId, workflowId } = (await res.json()) as { subscriptionId: string; workflowId: string };
    await vi.waitFor(
      async () => {
        const state = await fetch(`${apiUrl}/v1/subscriptions/${subscriptionId}`, { headers });
        expect(((await state.json()) as { status: string }).status).toBe('active');
      },
      { timeout: 45_000, interval: 250 },
    );
    // Ends the workflow, so that its run span is exported too.
    const cancel = await fetch(`${apiUrl}/v1/subscriptions/${subscriptionId}/cancel`, { method: 'POST', headers, body: JSON.stringify({ atPeriodEnd: false }) });
    expect(cancel.status).toBeLessThan(300);

    const apiSpan = await vi.waitFor(
      () => {
        const span = receiver.spans.find((s) => s.kind === SERVER && s.name === 'POST /v1/subscriptions' && s.attributes['http.route'] === '/v1/subscriptions');
        expect(span).toBeDefined();
        return span!;
      },
      { timeout: 30_000, interval: 200 },
    );
    const inTrace = () => receiver.spans.filter((s) => s.traceId === apiSpan.traceId);
    const named = (name: string) => inTrace().filter((s) => s.name === name);
    const activities = ['storeCustomer', 'createStripeCustomer', 'attachPaymentMethod', 'createStripeSubscription', 'provisionEntitlements', 'markSubscriptionActive'];
    await vi.waitFor(
      () => {
        expect(named('RunWorkflow:createSubscriptionWorkflow')).toHaveLength(1);
        for (const activity of activities) expect(named(`RunActivity:${activity}`), activity).not.toHaveLength(0);
      },
      { timeout: 30_000, interval: 200 },
    );
    const spans = inTrace();
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const ancestors = (span: ReceivedSpan): ReceivedSpan[] => {
      const chain: ReceivedSpan[] = [];
      for (let parent = byId.get(span.parentSpanId); parent; parent = byId.get(parent.parentSpanId)) chain.push(parent);
      return chain;
    };
    const beneath = (span: ReceivedSpan, ancestor: ReceivedSpan) => ancestors(span).includes(ancestor);

    // The API's span is the root: every other span of the trace hangs beneath it, none is orphaned.
    expect(apiSpan.parentSpanId).toBe('');
    expect(apiSpan.service).toBe('ledgerlock');
    for (const span of spans) if (span !== apiSpan) expect(beneath(span, apiSpan), `${span.name} beneath the API span`).toBe(true);

    // API span → Express handler → Temporal client start → the workflow run → each activity scheduled → its execution.
    const [handler] = named('POST /v1/subscriptions').filter((s) => s.kind !== SERVER);
    expect(handler?.parentSpanId).toBe(apiSpan.spanId);
    const [start] = named('StartWorkflow:createSubscriptionWorkflow');
    expect(start && beneath(start, handler!)).toBe(true);
    expect(start!.attributes.temporalWorkflowId).toBe(workflowId);
    const [run] = named('RunWorkflow:createSubscriptionWorkflow');
    expect(run!.parentSpanId).toBe(start!.spanId);
    for (const activity of activities) {
      const execution = named(`RunActivity:${activity}`)[0]!;
      const scheduled = byId.get(execution.parentSpanId)!;
      expect(scheduled.name).toBe(`StartActivity:${activity}`);
      expect(beneath(scheduled, run!)).toBe(true);
      expect(execution.attributes).toMatchObject({ temporalWorkflowId: workflowId });
    }

    // Outgoing HTTP beneath the activities that made them: Stripe's calls, and KMS's.
    const stripeCalls = spans.filter((s) => s.kind === CLIENT && s.name.startsWith('Stripe '));
    expect(stripeCalls.map((s) => s.name)).toEqual(
      expect.arrayContaining(['Stripe POST /v1/customers', 'Stripe POST /v1/payment_methods/{id}/attach', 'Stripe POST /v1/customers/{id}', 'Stripe POST /v1/subscriptions']),
    );
    for (const call of stripeCalls) expect(ancestors(call).some((a) => a.name.startsWith('RunActivity:')), call.name).toBe(true);
    const customerCall = stripeCalls.find((s) => s.name === 'Stripe POST /v1/customers')!;
    expect(byId.get(customerCall.parentSpanId)!.name).toBe('RunActivity:createStripeCustomer');
    const kmsCalls = spans.filter((s) => s.kind === CLIENT && s.name.startsWith('KMS '));
    // The API seals the profile under a new data key; the worker unwraps it to store the customer and to call Stripe.
    expect(kmsCalls.some((s) => s.name === 'KMS GenerateDataKey' && beneath(s, handler!))).toBe(true);
    expect(kmsCalls.some((s) => s.name === 'KMS Decrypt' && ancestors(s).some((a) => a.name.startsWith('RunActivity:')))).toBe(true);
    for (const call of [...stripeCalls, ...kmsCalls]) expect(call.attributes['http.status_code']).toBeLessThan(300);

    // The API's log line of the request names the same trace.
    const requestLine = api
      .stdout()
      .split('\n')
      .filter((line) => line.includes('"msg":"request"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.route === '/v1/subscriptions' && entry.method === 'POST');
    expect(requestLine).toMatchObject({ trace_id: apiSpan.traceId, subscriptionId, workflowId });

    // Attributes carry opaque ids only: no personal value, no token, no client address or agent, anywhere.
    const everything = JSON.stringify(receiver.spans);
    for (const value of [person.email, person.name, person.phone, token, tag]) expect(everything).not.toContain(value);
    for (const body of receiver.bodies) for (const value of [person.email, person.name, person.phone, token]) expect(body.includes(value)).toBe(false);
    for (const span of receiver.spans) {
      expect(Object.keys(span.attributes)).not.toEqual(expect.arrayContaining(['net.peer.ip']));
      expect(span.attributes).not.toHaveProperty('http.user_agent');
      expect(span.attributes).not.toHaveProperty('memo');
      expect(span.attributes).not.toHaveProperty('lastResult');
    }
  });
});
