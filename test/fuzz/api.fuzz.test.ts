import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES } from '../../src/auth/scopes';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { startTestApi } from '../support/runtime';
import { ownDatabase } from '../support/own-database';
import { tokenFor } from '../support/tokens';

/**
 * Every API route over real HTTP against arbitrary bodies, headers and path parameters, as an
 * authorised caller and as anyone: each answer is below 500, and each refusal is an
 * application/problem+json document whose status is the response's, naming the fields it
 * refuses. Its own database and a task queue no worker polls: a body that happens to be
 * valid starts a workflow that never runs, and leaves nothing in the other suites' way.
 */

interface Route {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string;
  /** Field names the route's body knows, so the generator reaches past the first check. */
  readonly fields?: readonly string[];
}

const ROUTES: readonly Route[] = [
  { method: 'POST', path: '/v1/customers', fields: ['email', 'name', 'country', 'phone', 'address', 'taxId'] },
  { method: 'GET', path: '/v1/customers/:id' },
  { method: 'GET', path: '/v1/customers/:id/export' },
  { method: 'DELETE', path: '/v1/customers/:id' },
  { method: 'POST', path: '/v1/customers/:id/consents', fields: ['purpose', 'granted', 'source'] },
  { method: 'GET', path: '/v1/customers/:id/consents' },
  { method: 'POST', path: '/v1/subscriptions', fields: ['customer', 'priceId', 'paymentMethodId', 'trialDays', 'metadata'] },
  { method: 'GET', path: '/v1/subscriptions/:id' },
  { method: 'POST', path: '/v1/subscriptions/:id/cancel', fields: ['atPeriodEnd'] },
  { method: 'POST', path: '/v1/subscriptions/:id/refunds', fields: ['invoiceId', 'amount', 'reason'] },
  { method: 'POST', path: '/v1/key-rotations', fields: ['reason'] },
  { method: 'GET', path: '/v1/key-rotations/:id' },
  { method: 'GET', path: '/v1/audit' },
];

/** What fetch can send in a header: printable ASCII and Latin-1, never CR, LF or NUL. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 80 });
const pathParam = fc.oneof(
  fc.uint8Array({ minLength: 10, maxLength: 20 }).map((b) => `cust_${Buffer.from(b).toString('hex')}`),
  fc.uint8Array({ minLength: 10, maxLength: 20 }).map((b) => `sub_ll_${Buffer.from(b).toString('hex')}`),
  fc.constantFrom('key-rotation:x', 'key-rotation-2026-01-01T00:00:00Z', '..', '%', 'null', '0'),
  fc.string({ maxLength: 60 }),
);
const jsonish = fc.jsonValue({ maxDepth: 3 });
const bodyFor = (route: Route) =>
  fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 2, arbitrary: jsonish.map((v) => JSON.stringify(v)) },
    {
      weight: 5,
      arbitrary: fc
        .dictionary(fc.constantFrom(...(route.fields ?? ['x'])), fc.oneof(jsonish, fc.string({ maxLength: 40 }), fc.emailAddress()), { maxKeys: 8 })
        .map((v) => JSON.stringify(v)),
    },
  );
const contentType = fc.option(fc.oneof(fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16'), headerText), { nil: undefined });
const query = fc.option(fc.dictionary(fc.constantFrom('after', 'limit', 'subjectType', 'subjectId', 'x'), fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String))), { nil: undefined });

describe('API over HTTP (property)', () => {
  let api: RunningServer & { services: Services };
  let token: string;
  let dropDatabase: () => Promise<void>;

  beforeAll(async () => {
    const own = await ownDatabase('apifuzz', { TEMPORAL_TASK_QUEUE: `apifuzz-nobody-polls-${randomBytes(4).toString('hex')}` }, 1);
    dropDatabase = own.drop;
    api = await startTestApi(own.config);
    token = await tokenFor(own.config, 'svc-fuzz', SCOPES.filter((s) => !s.startsWith('payload:')));
  }, 60_000);
  afterAll(async () => {
    await api?.stop();
    await dropDatabase?.();
  });

  /** Sends one request and checks the answer's shape; returns its status. */
  async function send(method: string, path: string, headers: Record<string, string>, body: string | undefined): Promise<number> {
    const res = await fetch(`${api.url}${path}`, { method, headers, ...(body !== undefined && method !== 'GET' ? { body } : {}) });
    const text = await res.text();
    expect(res.status, `${method} ${path} -> ${res.status}: ${text.slice(0, 300)}`).toBeLessThan(500);
    if (res.status >= 400) {
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = JSON.parse(text) as { status: number; title: string; errors?: { field: string; message: string }[] };
      expect(problem.status).toBe(res.status);
      expect(typeof problem.title).toBe('string');
      for (const error of problem.errors ?? []) {
        expect(error.field).toMatch(/^(body|path|query|header)(\.|$)/);
        expect(typeof error.message).toBe('string');
      }
    }
    return res.status;
  }

  it('answers every route, body, header and path parameter of an authorised caller below 500, refusals as problem documents', async () => {
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES).chain((route) => fc.tuple(fc.constant(route), bodyFor(route))),
        pathParam,
        contentType,
        fc.option(headerText, { nil: undefined }),
        fc.option(headerText, { nil: undefined }),
        query,
        async ([route, body], id, type, idempotencyKey, purpose, params) => {
          const path = route.path.replace(':id', encodeURIComponent(id)) + (params ? `?${new URLSearchParams(params)}` : '');
          const headers: Record<string, string> = { authorization: `Bearer ${token}` };
          if (type !== undefined) headers['content-type'] = type;
          if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
          if (purpose !== undefined) headers['ledgerlock-purpose'] = purpose;
          seen.add(await send(route.method, path, headers, body));
        },
      ),
      { numRuns: 1500 },
    );
    // The generator reached the validators, not only the router.
    expect(seen.has(400)).toBe(true);
  }, 240_000);

  it('refuses every request without a valid bearer token with a 401 problem, whatever else it carries', async () => {
    const authorization = fc.option(
      fc.oneof(
        headerText,
        headerText.map((t) => `Bearer ${t}`),
        fc.constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', `Bearer ${'a'.repeat(5000)}`),
        fc.tuple(fc.base64String({ maxLength: 40 }), fc.base64String({ maxLength: 80 }), fc.base64String({ maxLength: 40 })).map((parts) => `Bearer ${parts.join('.')}`),
      ),
      { nil: undefined },
    );
    // A parameter the URL keeps (an empty one or a dot segment names another path, a 404 before any route).
    const routed = pathParam.filter((id) => !['', '.', '..'].includes(id));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES), routed, authorization, async (route, id, auth) => {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (auth !== undefined) headers.authorization = auth;
        const status = await send(route.method, route.path.replace(':id', encodeURIComponent(id)), headers, '{}');
        expect(status).toBe(401);
      }),
      { numRuns: 1000 },
    );
  }, 240_000);
});
