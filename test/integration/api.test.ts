import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HealthReport } from '../../src/health/health';
import type { RunningServer } from '../../src/runtime';
import { freePort } from '../../src/stack/process';
import { startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';


describe('API /healthz and /readyz', () => {
  let api: RunningServer;
  beforeAll(async () => {
    api = await startTestApi();
  });
  afterAll(() => api?.stop());

  it('is 200 and names each dependency up when all are reachable', async () => {
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as HealthReport;
    expect(body.status).toBe('ok');
    for (const name of ['temporal', 'postgres', 'kms', 'stripe'] as const) expect(body.dependencies[name].status).toBe('up');
  });

  it('is 503 naming the dependency that is down, and only that one', async () => {
    const deadPort = await freePort();
    const broken = await startTestApi(testConfig({ STRIPE_API_URL: `http://127.0.0.1:${deadPort}` }));
    try {
      const res = await fetch(`${broken.url}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as HealthReport;
      expect(body.status).toBe('unavailable');
      expect(body.dependencies.stripe.status).toBe('down');
      expect(body.dependencies.temporal.status).toBe('up');
      expect(body.dependencies.postgres.status).toBe('up');
      expect(body.dependencies.kms.status).toBe('up');
      // Why it failed is logged, not exposed to an unauthenticated caller.
      expect(JSON.stringify(body)).not.toContain(String(deadPort));
    } finally {
      await broken.stop();
    }
  });

  it('answers liveness from the process alone, with every dependency down', async () => {
    const deadPort = await freePort();
    const broken = await startTestApi(
      testConfig({ STRIPE_API_URL: `http://127.0.0.1:${deadPort}`, DATABASE_URL: `postgres://127.0.0.1:${deadPort}/nowhere`, KMS_ENDPOINT: `http://127.0.0.1:${deadPort}`, TEMPORAL_ADDRESS: `127.0.0.1:${deadPort}` }),
    );
    try {
      const res = await fetch(`${broken.url}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
      expect((await fetch(`${broken.url}/readyz`)).status).toBe(503);
    } finally {
      await broken.stop();
    }
  });

  it('reports PostgreSQL down when the database is unreachable', async () => {
    const deadPort = await freePort();
    const broken = await startTestApi(testConfig({ DATABASE_URL: `postgres://127.0.0.1:${deadPort}/nowhere` }));
    try {
      const res = await fetch(`${broken.url}/readyz`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as HealthReport).dependencies.postgres.status).toBe('down');
    } finally {
      await broken.stop();
    }
  });
});

describe('API errors', () => {
  let api: RunningServer;
  beforeAll(async () => {
    api = await startTestApi();
  });
  afterAll(() => api?.stop());

  it('answers an unknown route with problem+json', async () => {
    const res = await fetch(`${api.url}/v1/nope`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 404, title: 'Not Found' });
  });

  it('answers malformed JSON with a 400 problem, never a stack trace', async () => {
    const res = await fetch(`${api.url}/v1/anything`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ status: 400, title: 'Bad Request' });
    expect(text).not.toMatch(/at .*\.ts|node_modules/);
  });

  it('refuses an oversized body with 413', async () => {
    const res = await fetch(`${api.url}/v1/anything`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ blob: 'x'.repeat(200_000) }),
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});
