import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDunningActivities, type OutgoingNotice } from '../../activities/dunning';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer, markCustomerErased } from '../../src/customers/customer-dal';
import { createDb, type Db } from '../../src/db/database';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { upsertSubscription } from '../../src/subscriptions/subscription-dal';
import { startTestApi } from '../support/runtime';
import { testConfig, testStack } from '../support/stack';
import { tokenFor } from '../support/tokens';

/**
 * Consent records through the API, against PostgreSQL as the application role: appended and
 * audited, never edited; and the dunning notices that honour a withdrawn consent.
 */
describe('consent records', () => {
  const config = testConfig();
  let api: RunningServer & { services: Services };
  let owner: Db;
  let writer: string;
  let reader: string;

  beforeAll(async () => {
    api = await startTestApi(config);
    owner = createDb(testStack().databaseUrl, { max: 2 });
    writer = await tokenFor(config, 'svc-consent-form', ['customers:write']);
    reader = await tokenFor(config, 'svc-privacy-desk', ['customers:read']);
  });
  afterAll(async () => {
    await api?.stop();
    await owner?.destroy();
  });

  const newCustomer = async () => {
    const customerId = `cust_${randomBytes(12).toString('hex')}`;
    await insertCustomer(api.services.db, await sealProfile(api.services.envelope, customerId, { email: `consent-${randomUUID()}@example.com`, name: 'Con Sent', country: 'FR' }));
    return customerId;
  };
  const record = (customerId: string, body: unknown, key: string = randomUUID()) =>
    fetch(`${api.url}/v1/customers/${customerId}/consents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
    });
  const read = (customerId: string) =>
    fetch(`${api.url}/v1/customers/${customerId}/consents`, { headers: { authorization: `Bearer ${reader}`, 'ledgerlock-purpose': 'consent audit 12' } });
  const auditOf = (customerId: string) =>
    owner.selectFrom('audit_log').select(['action', 'details', 'purpose']).where('subject_id', '=', customerId).orderBy('seq').execute();

  it('appends a grant and a withdrawal as two records, each audited, the newest in force', async () => {
    const customerId = await newCustomer();
    const granted = await record(customerId, { purpose: 'notifications', granted: true, source: 'web:signup-form:v3' });
    expect(granted.status).toBe(201);
    const first = (await granted.json()) as { id: string; recordedBy: string };
    expect(first).toMatchObject({ purpose: 'notifications', granted: true, source: 'web:signup-form:v3' });
    expect(first.id).toMatch(/^cons_[0-9a-f]{32}$/);
    const withdrawn = await record(customerId, { purpose: 'notifications', granted: false, source: 'web:account-settings' });
    expect(withdrawn.status).toBe(201);

    const res = await read(customerId);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { records: { granted: boolean }[]; inForce: Record<string, { granted: boolean; source: string }> };
    expect(body.records.map((r) => r.granted)).toEqual([true, false]);
    expect(body.inForce.notifications).toMatchObject({ granted: false, source: 'web:account-settings' });
    expect(body.inForce).not.toHaveProperty('marketing');

    const audit = await auditOf(customerId);
    expect(audit.map((a) => a.action)).toEqual(['customer.consent_recorded', 'customer.consent_recorded', 'customer.consents_read']);
    expect(audit[0]!.details).toMatchObject({ consentId: first.id, purpose: 'notifications', granted: true, source: 'web:signup-form:v3' });
    expect(audit[2]!.purpose).toBe('consent audit 12');
  });

  it('answers a retry with the same record, and refuses the same Idempotency-Key with another body', async () => {
    const customerId = await newCustomer();
    const body = { purpose: 'marketing', granted: true, source: 'support:call' };
    const first = (await (await record(customerId, body, 'consent-key-1')).json()) as { id: string };
    const again = await record(customerId, body, 'consent-key-1');
    expect(again.status).toBe(200);
    expect(((await again.json()) as { id: string }).id).toBe(first.id);
    const other = await record(customerId, { ...body, granted: false }, 'consent-key-1');
    expect(other.status).toBe(409);
    expect(other.headers.get('content-type')).toContain('application/problem+json');
    const stored = await owner.selectFrom('customer_consents').selectAll().where('customer_id', '=', customerId).execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]!.granted).toBe(true);
    expect((await auditOf(customerId)).filter((a) => a.action === 'customer.consent_recorded')).toHaveLength(1);
  });

  it.each([
    ['an undeclared purpose', { purpose: 'profiling', granted: true, source: 'web:form' }, 'body.purpose'],
    ['free text as the source', { purpose: 'marketing', granted: true, source: 'Ada told me on the phone' }, 'body.source'],
    ['a granted that is not a boolean', { purpose: 'marketing', granted: 'yes', source: 'web:form' }, 'body.granted'],
    ['an extra member', { purpose: 'marketing', granted: true, source: 'web:form', note: 'ada@example.com' }, 'body'],
  ])('refuses %s with a problem naming the field, and writes nothing', async (_, body, field) => {
    const customerId = await newCustomer();
    const res = await record(customerId, body);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    const problem = (await res.json()) as { errors: { field: string }[] };
    expect(problem.errors.map((e) => e.field)).toContain(field);
    expect(await owner.selectFrom('customer_consents').select('id').where('customer_id', '=', customerId).execute()).toEqual([]);
    expect(await auditOf(customerId)).toEqual([]);
  });

  it('answers 404 for an unknown customer and 410 for an erased one', async () => {
    const unknown = `cust_${randomBytes(12).toString('hex')}`;
    expect((await record(unknown, { purpose: 'marketing', granted: true, source: 'web:form' })).status).toBe(404);
    const erased = await newCustomer();
    await markCustomerErased(api.services.db, erased);
    expect((await record(erased, { purpose: 'marketing', granted: true, source: 'web:form' })).status).toBe(410);
    expect((await read(erased)).status).toBe(410);
  });

  it('gives the application role no way to edit or delete a record', async () => {
    const customerId = await newCustomer();
    const { id } = (await (await record(customerId, { purpose: 'analytics', granted: true, source: 'web:cookie-banner' })).json()) as { id: string };
    await expect(api.services.db.updateTable('customer_consents').set({ granted: false }).where('id', '=', id).execute()).rejects.toThrow(/permission denied/);
    await expect(api.services.db.deleteFrom('customer_consents').where('id', '=', id).execute()).rejects.toThrow(/permission denied/);
    expect(await owner.selectFrom('customer_consents').select('granted').where('id', '=', id).executeTakeFirst()).toEqual({ granted: true });
  });

  it('sends contractual dunning notices whatever the consent, and others only while it is not withdrawn', async () => {
    const sent: OutgoingNotice[] = [];
    const local = createDunningActivities({ ...api.services, config, noticeSender: { send: async (notice) => void sent.push(notice) } });
    const customerId = await newCustomer();
    const subscriptionId = `sub_ll_${randomBytes(12).toString('hex')}`;
    await upsertSubscription(api.services.db, { subscriptionId, customerId, priceId: 'price_basic', status: 'past_due', sagaStep: 'completed' });
    const notice = (attempt: number, template: string) =>
      local.queueDunningNotice({ dunningId: `dunning:${subscriptionId}:in_c1`, subscriptionId, customerId, invoiceId: 'in_c1', attempt, template });

    expect(await notice(1, 'payment_method_reminder')).toMatchObject({ status: 'sent' }); // no record yet: allowed, as before
    await record(customerId, { purpose: 'notifications', granted: false, source: 'email:unsubscribe-link' });
    expect(await notice(2, 'payment_failed')).toMatchObject({ status: 'sent' });
    expect(await notice(3, 'payment_method_reminder')).toMatchObject({ status: 'skipped' });
    await record(customerId, { purpose: 'notifications', granted: true, source: 'web:account-settings' });
    expect(await notice(4, 'payment_method_reminder')).toMatchObject({ status: 'sent' });
    expect(sent.map((n) => `${n.attempt}:${n.template}`)).toEqual(['1:payment_method_reminder', '2:payment_failed', '4:payment_method_reminder']);
    const skipped = await owner.selectFrom('notification_outbox').select(['status', 'recipient']).where('id', '=', `dunning:${subscriptionId}:in_c1:notice-3`).executeTakeFirstOrThrow();
    expect(skipped).toEqual({ status: 'skipped', recipient: null });
  });
});
