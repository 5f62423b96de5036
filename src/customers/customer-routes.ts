import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { Router, type Request } from 'express';
import { z } from 'zod';
import { appendAuditEntry } from '../audit/audit-dal';
import type { Principal } from '../auth/scopes';
import type { DataKeys } from '../crypto/data-keys';
import type { Envelope } from '../crypto/envelope';
import { DataKeyDestroyedError } from '../crypto/errors';
import type { CustomerRow, Db } from '../db/database';
import type { Authorize } from '../http/auth';
import { claimIdempotencyKey, idempotencyKeyOf, idFor, requestIdOf, requiredHeader } from '../http/idempotency';
import { sendProblem, validationProblem } from '../http/problem';
import { logFields } from '../http/request-log';
import type { registerCustomerWorkflow } from '../../workflows/customers';
import { appendConsent, consentInputSchema, consentsInForce, findConsent, listConsents, sameConsent, toConsentRecord } from './customer-consents';
import { openProfile, sealProfile } from './customer-crypto';
import { buildSubjectAccessExport } from './customer-export';
import { findCustomer } from './customer-dal';
import { erasureState, requestErasure, type ErasureState } from './customer-erasure';
import { customerProfileSchema, type CustomerProfile } from './customer-types';

export interface CustomerRouteDeps {
  readonly db: Db;
  readonly envelope: Envelope;
  readonly dataKeys: DataKeys;
  readonly temporal: Pick<Client, 'workflow'>;
  readonly taskQueue: string;
  readonly authorize: Authorize;
}

const PURPOSE = 'Ledgerlock-Purpose';
const customerIdParam = z.string().regex(/^cust_[a-z0-9]{20,40}$/, 'must be a Ledgerlock customer id (cust_…)');
/** Why personal data is needed: required for every read and erasure, and audited. */
export const purposeHeader = z
  .string()
  .trim()
  .min(3, 'must say why the personal data is needed')
  .max(200)
  .refine((p) => !p.includes('@'), 'must not contain personal data');

function customerIdOf(req: Request): string {
  const parsed = customerIdParam.safeParse(req.params.id);
  if (!parsed.success) throw validationProblem(parsed.error, 'path.id');
  return parsed.data;
}

export function createCustomerRouter(deps: CustomerRouteDeps): Router {
  const router = Router();

  router.post('/v1/customers', ...deps.authorize('customers:write'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const idempotencyKey = idempotencyKeyOf(req);
    const body = customerProfileSchema.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const customerId = idFor('cust_', principal.subject, idempotencyKey);
    const workflowId = `customer-registration:${customerId}`;
    logFields(res, { customerId, workflowId });
    const sealed = await sealProfile(deps.envelope, customerId, body.data);
    await claimIdempotencyKey(deps, { caller: res.locals.actor, idempotencyKey, dataKeyId: sealed.dataKeyId, body: body.data, workflowId });

    try {
      await deps.temporal.workflow.start<typeof registerCustomerWorkflow>('registerCustomerWorkflow', {
        taskQueue: deps.taskQueue,
        workflowId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ customer: sealed, requestedBy: res.locals.actor }],
      });
    } catch (err) {
      // The first request (or a concurrent one) started it: same saga, same answer.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    res.status(202).location(`/v1/customers/${customerId}`).json({ customerId, workflowId, status: 'registering' });
  });

  router.get('/v1/customers/:id', ...deps.authorize('customers:read'), async (req, res) => {
    const customerId = customerIdOf(req);
    const purpose = requiredHeader(req, PURPOSE, purposeHeader);
    const requestId = requestIdOf(req);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, notFound(customerId));
    // Once an erasure was asked for, nothing personal is released, whether it is under way, done or failed.
    const erasure = await erasureBarring(deps.temporal, row);
    if (erasure?.status === 'erased') return sendProblem(res, gone(customerId));
    if (erasure) {
      res.setHeader('Cache-Control', 'no-store');
      return res.json({ id: row.id, status: erasure.status, ...(erasure.reason ? { erasure: { reason: erasure.reason } } : {}) });
    }
    await auditAccess(deps.db, { actor: res.locals.actor, action: 'customer.read', customerId, purpose, requestId });
    let profile: CustomerProfile;
    try {
      profile = await openProfile(deps.envelope, row);
    } catch (err) {
      if (err instanceof DataKeyDestroyedError) return sendProblem(res, gone(customerId));
      throw err;
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      id: row.id,
      status: row.status,
      region: row.region,
      stripeCustomerId: row.stripe_customer_id,
      createdAt: row.created_at.toISOString(),
      ...profile,
    });
  });

  // Subject access (GDPR art. 15): everything held about the customer, in one document.
  router.get('/v1/customers/:id/export', ...deps.authorize('customers:export'), async (req, res) => {
    const customerId = customerIdOf(req);
    const purpose = requiredHeader(req, PURPOSE, purposeHeader);
    const requestId = requestIdOf(req);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, notFound(customerId));
    const erasure = await erasureBarring(deps.temporal, row);
    if (erasure?.status === 'erased') return sendProblem(res, gone(customerId));
    if (erasure) {
      return sendProblem(res, { title: 'Conflict', status: 409, detail: `An erasure of customer ${customerId} was requested: nothing personal is released.`, customerStatus: erasure.status });
    }
    // Audited before anything is read, like a read: the export is an access of its own, and shows in itself.
    await auditAccess(deps.db, { actor: res.locals.actor, action: 'customer.subject_access_export', customerId, purpose, requestId });
    let document;
    try {
      document = await buildSubjectAccessExport(deps, row);
    } catch (err) {
      if (err instanceof DataKeyDestroyedError) return sendProblem(res, gone(customerId));
      throw err;
    }
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Disposition', `attachment; filename="${customerId}-export.json"`);
    res.json(document);
  });

  router.delete('/v1/customers/:id', ...deps.authorize('customers:erase'), async (req, res) => {
    const customerId = customerIdOf(req);
    const reason = requiredHeader(req, PURPOSE, purposeHeader);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, notFound(customerId));
    // Recorded when asked, not only when done: the request itself is what a regulator asks to see.
    await appendAuditEntry(deps.db, {
      idempotencyKey: `api:customer.erasure_requested:${randomUUID()}`,
      actor: res.locals.actor,
      action: 'customer.erasure_requested',
      subjectType: 'customer',
      subjectId: customerId,
      purpose: reason,
    });
    const { workflowId, started } = await requestErasure(deps.temporal, deps.taskQueue, { customerId, requestedBy: res.locals.actor, reason });
    if (!started && (await erasureState(deps.temporal, customerId))?.status === 'erased') {
      return res.status(200).json({ customerId, workflowId, status: 'erased' });
    }
    res.status(202).json({ customerId, workflowId, status: 'erasing' });
  });

  // Consent records: appended, never edited; a withdrawal is a record of its own. Each is audited.
  router.post('/v1/customers/:id/consents', ...deps.authorize('customers:write'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const customerId = customerIdOf(req);
    const idempotencyKey = idempotencyKeyOf(req);
    const body = consentInputSchema.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, notFound(customerId));
    if (row.status === 'erased') return sendProblem(res, gone(customerId));
    const id = idFor('cons_', principal.subject, idempotencyKey);
    const conflict = () =>
      sendProblem(res, { title: 'Conflict', status: 409, detail: 'This Idempotency-Key was used for another consent record.', errors: [{ field: 'header.Idempotency-Key', message: 'already used for another request' }] });
    const earlier = await findConsent(deps.db, id);
    if (earlier) return sameConsent(earlier, customerId, body.data) ? res.status(200).json(toConsentRecord(earlier)) : conflict();
    // Audited before it is written: a record the audit trail cannot show is not kept. A retry
    // after a failure in between finds the same audit entry (same key, same content).
    await appendAuditEntry(deps.db, {
      idempotencyKey: `api:customer.consent_recorded:${id}`,
      actor: res.locals.actor,
      action: 'customer.consent_recorded',
      subjectType: 'customer',
      subjectId: customerId,
      details: { consentId: id, purpose: body.data.purpose, granted: body.data.granted, source: body.data.source },
    });
    const stored = await appendConsent(deps.db, { id, customerId, recordedBy: res.locals.actor, ...body.data });
    // Another request with this key won the race with another body.
    if (!sameConsent(stored, customerId, body.data)) return conflict();
    res.status(201).location(`/v1/customers/${customerId}/consents`).json(toConsentRecord(stored));
  });

  router.get('/v1/customers/:id/consents', ...deps.authorize('customers:read'), async (req, res) => {
    const customerId = customerIdOf(req);
    const purpose = requiredHeader(req, PURPOSE, purposeHeader);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, notFound(customerId));
    if (row.status === 'erased') return sendProblem(res, gone(customerId));
    await auditAccess(deps.db, { actor: res.locals.actor, action: 'customer.consents_read', customerId, purpose, requestId: undefined });
    const records = await listConsents(deps.db, customerId);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ customerId, inForce: consentsInForce(records), records });
  });

  return router;
}

function notFound(customerId: string) {
  return { title: 'Not Found', status: 404, detail: `No customer ${customerId}.` };
}

/**
 * The erasure that bars releasing anything personal of the customer, whether it is under
 * way, done or failed: `erased` also for a row erased with no workflow to tell (a failed
 * creation saga's compensation). Undefined when none was asked for.
 */
async function erasureBarring(temporal: Pick<Client, 'workflow'>, row: CustomerRow): Promise<ErasureState | undefined> {
  const erasure = await erasureState(temporal, row.id);
  return erasure ?? (row.status === 'erased' ? { status: 'erased' } : undefined);
}

/**
 * Audits an access to the customer's data, before anything is read: if the audit trail
 * cannot record it, nothing is read. Every access is its own entry (the key is ours), the
 * caller's request id only a detail.
 */
async function auditAccess(db: Db, access: { actor: string; action: string; customerId: string; purpose: string; requestId: string | undefined }): Promise<void> {
  await appendAuditEntry(db, {
    idempotencyKey: `api:${access.action}:${randomUUID()}`,
    actor: access.actor,
    action: access.action,
    subjectType: 'customer',
    subjectId: access.customerId,
    purpose: access.purpose,
    ...(access.requestId ? { details: { requestId: access.requestId } } : {}),
  });
}

function gone(customerId: string) {
  return { title: 'Gone', status: 410, detail: `Customer ${customerId} was erased.`, customerStatus: 'erased' };
}
