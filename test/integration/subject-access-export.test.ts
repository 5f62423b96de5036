import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDunningActivities } from '../../activities/dunning';
import { appendAuditEntry } from '../../src/audit/audit-dal';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer, markCustomerErased } from '../../src/customers/customer-dal';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { grantEntitlement, upsertSubscription } from '../../src/subscriptions/subscription-dal';
import { startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';
import { tokenFor } from '../support/tokens';

/**
 * GET /v1/customers/:id/export against PostgreSQL: each part of the document comes from
 * the rows the workflows and routes leave (written here through the same DAL and activities),
 * and nothing of another customer leaks in.
 */
describe('subject-access export', () => {
  const config = testConfig();
  let api: RunningServer & { services: Services };
  let exporter: string;
  let writer: string;

  beforeAll(async () => {
    api = await startTestApi(config);
    exporter = await tokenFor(config, 'svc-dpo', ['customers:export']);
    writer = await tokenFor(config, 'svc-prefs', ['customers:write']);
  });
  afterAll(async () => {
    await api?.stop();
  });

  const newCustomer = async (email: string) => {
    const customerId = `cust_${randomBytes(12).toString('hex')}`;
    await insertCustomer(api.services.db, await sealProfile(api.services.envelope, customerId, { email, name: 'Ex Port', country: 'IT' }));
    return customerId;
  };
  const exportOf = (customerId: string, headers: Record<string, string> = { 'ledgerlock-purpose': 'GDPR art. 15 request 7' }) =>
    fetch(`${api.url}/v1/customers/${customerId}/export`, { headers: { authorization: `Bearer ${exporter}`, ...headers } });
  const workflowAudit = (subscriptionId: string, action: string, name: string, details: Record<string, string | number | null>) =>
    appendAuditEntry(api.services.db, { idempotencyKey: `test:${subscriptionId}:${action}:${name}`, actor: `workflow:subscription:${subscriptionId}`, action, subjectType: 'subscription', subjectId: subscriptionId, details });

  it('holds the profile, subscriptions with their history, dunning campaigns and notices, refunds, consents and the access log', async () => {
    const email = `export-${randomUUID()}@example.com`;
    const customerId = await newCustomer(email);
    const bystanderId = await newCustomer(`bystander-${randomUUID()}@example.com`);
    const subscriptionId = `sub_ll_${randomBytes(12).toString('hex')}`;
    const otherSubscription = `sub_ll_${randomBytes(12).toString('hex')}`;
    await upsertSubscription(api.services.db, { subscriptionId, customerId, priceId: 'price_basic', status: 'past_due', sagaStep: 'completed' });
    await upsertSubscription(api.services.db, { subscriptionId: otherSubscription, customerId: bystanderId, priceId: 'price_basic', status: 'active', sagaStep: 'completed' });
    await grantEntitlement(api.services.db, { subscriptionId, customerId, priceId: 'price_basic' });
    await workflowAudit(subscriptionId, 'saga.step', 'create subscription', { step: 'create subscription', customerId });
    await workflowAudit(subscriptionId, 'subscription.refund', 'refund-1', { invoiceId: 'in_paid1', refundId: 're_1', amount: 500, currency: 'eur' });
    await workflowAudit(subscriptionId, 'dunning.started', 'campaign', { invoiceId: 'in_failed1', attempt: 0 });
    await workflowAudit(subscriptionId, 'dunning.retry', 'attempt-1', { invoiceId: 'in_failed1', attempt: 1, outcome: 'soft_decline' });
    await workflowAudit(otherSubscription, 'subscription.refund', 'refund-x', { invoiceId: 'in_other', refundId: 're_other', amount: 900, currency: 'eur' });
    const dunning = createDunningActivities({ ...api.services, config, noticeSender: { send: async () => undefined } });
    await dunning.queueDunningNotice({ dunningId: `dunning:${subscriptionId}:in_failed1`, subscriptionId, customerId, invoiceId: 'in_failed1', attempt: 1, template: 'payment_failed' });
    const consent = await fetch(`${api.url}/v1/customers/${customerId}/consents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${writer}`, 'content-type': 'application/json', 'idempotency-key': 'export-consent' },
      body: JSON.stringify({ purpose: 'marketing', granted: false, source: 'web:account-settings' }),
    });
    expect(consent.status).toBe(201);

    const res = await exportOf(customerId);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, any>;
    expect(doc.format).toBe('ledgerlock.subject-access-export.v1');
    expect(doc.customer).toMatchObject({ id: customerId, country: 'IT', region: 'eu', profile: { email, name: 'Ex Port' } });
    expect(doc.subscriptions).toHaveLength(1);
    expect(doc.subscriptions[0]).toMatchObject({ id: subscriptionId, status: 'past_due', priceId: 'price_basic', entitlements: [{ priceId: 'price_basic', revokedAt: null }] });
    expect(doc.subscriptions[0].history.map((e: { action: string }) => e.action)).toEqual(['saga.step', 'subscription.refund', 'dunning.started', 'dunning.retry']);
    expect(doc.dunning.campaigns).toEqual([expect.objectContaining({ subscriptionId, invoiceId: 'in_failed1', lastAction: 'dunning.retry' })]);
    expect(doc.dunning.notices).toEqual([expect.objectContaining({ subscriptionId, invoiceId: 'in_failed1', template: 'payment_failed', status: 'sent' })]);
    expect(doc.refunds).toEqual([expect.objectContaining({ subscriptionId, invoiceId: 'in_paid1', refundId: 're_1', amount: 500, currency: 'eur' })]);
    expect(doc.consents.inForce.marketing).toMatchObject({ granted: false, source: 'web:account-settings' });
    expect(doc.accessLog.map((e: { action: string }) => e.action)).toEqual(['customer.decrypt', 'customer.consent_recorded', 'customer.subject_access_export']);
    expect(doc.accessLog.at(-1)).toMatchObject({ actor: 'svc-dpo', purpose: 'GDPR art. 15 request 7' });
    // Nothing of the bystander, and the notice's recipient (ciphertext) is not part of it.
    const text = JSON.stringify(doc);
    expect(text).not.toContain(bystanderId);
    expect(text).not.toContain(otherSubscription);
    expect(text).not.toContain('recipient');
  });

  it('needs a purpose, answers 404 for an unknown customer and 410 once erased, auditing nothing for a refusal', async () => {
    const customerId = await newCustomer(`gone-${randomUUID()}@example.com`);
    const noPurpose = await exportOf(customerId, {});
    expect(noPurpose.status).toBe(400);
    expect(((await noPurpose.json()) as { errors: { field: string }[] }).errors[0]!.field).toBe('header.Ledgerlock-Purpose');
    expect((await exportOf(`cust_${randomBytes(12).toString('hex')}`)).status).toBe(404);
    await api.services.dataKeys.destroyForCustomer(customerId);
    await markCustomerErased(api.services.db, customerId);
    const gone = await exportOf(customerId);
    expect(gone.status).toBe(410);
    expect(gone.headers.get('content-type')).toContain('application/problem+json');
    const audited = await api.services.db.selectFrom('audit_log').select('action').where('subject_id', '=', customerId).where('action', '=', 'customer.subject_access_export').execute();
    expect(audited).toEqual([]);
  });
});
