import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { appendAuditEntry } from '../audit/audit-dal';
import type { Principal } from '../auth/scopes';
import type { DataKeys } from '../crypto/data-keys';
import type { Envelope } from '../crypto/envelope';
import { CryptoError, DataKeyDestroyedError } from '../crypto/errors';
import type { Db } from '../db/database';
import type { Authorize } from '../http/auth';
import { claimIdempotencyKey, idempotencyKeyOf, idFor, requestIdOf, requiredHeader } from '../http/idempotency';
import { sendProblem, validationProblem } from '../http/problem';
import type { eraseCustomerWorkflow, registerCustomerWorkflow } from '../../workflows/customers';
import { openProfile, sealProfile } from './customer-crypto';
import { findCustomer } from './customer-dal';
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
    const principal = res.locals.principal as Principal;
    const customerId = customerIdOf(req);
    const purpose = requiredHeader(req, PURPOSE, purposeHeader);
    const requestId = requestIdOf(req);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No customer ${customerId}.` });
    if (row.status === 'erased') return sendProblem(res, { title: 'Gone', status: 410, detail: `Customer ${customerId} was erased.` });
    // Audited before anything is decrypted: if the audit trail cannot record the read, nothing is read.
    // Every read is its own entry: the key is ours, the caller's request id only a detail.
    await appendAuditEntry(deps.db, {
      idempotencyKey: `api:customer.read:${randomUUID()}`,
      actor: res.locals.actor,
      action: 'customer.read',
      subjectType: 'customer',
      subjectId: customerId,
      purpose,
      ...(requestId ? { details: { requestId } } : {}),
    });
    let profile: CustomerProfile;
    try {
      profile = await openProfile(deps.envelope, row);
    } catch (err) {
      if (err instanceof DataKeyDestroyedError) return sendProblem(res, { title: 'Gone', status: 410, detail: `Customer ${customerId} was erased.` });
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

  router.delete('/v1/customers/:id', ...deps.authorize('customers:erase'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const customerId = customerIdOf(req);
    const reason = requiredHeader(req, PURPOSE, purposeHeader);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No customer ${customerId}.` });
    const workflowId = `customer-erasure:${customerId}`;
    try {
      await deps.temporal.workflow.start<typeof eraseCustomerWorkflow>('eraseCustomerWorkflow', {
        taskQueue: deps.taskQueue,
        workflowId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ customerId, requestedBy: res.locals.actor, reason }],
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    res.status(202).json({ customerId, workflowId, status: 'erasing' });
  });

  router.use('/v1/customers', (err: unknown, _req: Request, res: Response, next: (err?: unknown) => void) => {
    if (err instanceof CryptoError && err.retryable) {
      res.setHeader('Retry-After', '5');
      return sendProblem(res, { title: 'Service Unavailable', status: 503, detail: 'Encryption keys are unavailable; retry shortly.' });
    }
    next(err);
  });
  return router;
}
