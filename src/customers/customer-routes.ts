import { createHash, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
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
import { HttpProblem, sendProblem, validationProblem } from '../http/problem';
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

const IDEMPOTENCY_KEY = 'Idempotency-Key';
const PURPOSE = 'Ledgerlock-Purpose';
const customerIdParam = z.string().regex(/^cust_[a-z0-9]{20,40}$/, 'must be a Ledgerlock customer id (cust_…)');
const purposeHeader = z
  .string()
  .trim()
  .min(3, 'must say why the personal data is needed')
  .max(200)
  .refine((p) => !p.includes('@'), 'must not contain personal data');

/** The same caller and key always name the same customer, so a retried POST lands on the same saga. */
function customerIdFor(caller: string, idempotencyKey: string): string {
  return `cust_${createHash('sha256').update(`${caller}\n${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

/**
 * What a request said, keyed with the customer's own data key: a retry with another body
 * is detected, yet the stored fingerprint reveals nothing of the personal data and becomes
 * meaningless once the customer is crypto-shredded.
 */
function fingerprint(key: KeyObject, profile: CustomerProfile): string {
  return createHmac('sha256', key).update(canonical(profile)).digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function required(req: Request, header: string, schema: z.ZodType<string>): string {
  const parsed = schema.safeParse(req.header(header));
  if (!parsed.success) {
    throw new HttpProblem({
      title: 'Invalid request',
      status: 400,
      detail: `The ${header} header is missing or invalid.`,
      errors: [{ field: `header.${header}`, message: parsed.error.issues[0]?.message ?? 'required' }],
    });
  }
  return parsed.data;
}

function customerIdOf(req: Request): string {
  const parsed = customerIdParam.safeParse(req.params.id);
  if (!parsed.success) throw validationProblem(parsed.error, 'path.id');
  return parsed.data;
}

export function createCustomerRouter(deps: CustomerRouteDeps): Router {
  const router = Router();

  router.post('/v1/customers', ...deps.authorize('customers:write'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const idempotencyKey = required(req, IDEMPOTENCY_KEY, z.string().min(1).max(255));
    const body = customerProfileSchema.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const customerId = customerIdFor(principal.subject, idempotencyKey);
    const workflowId = `customer-registration:${customerId}`;

    const previous = await deps.db
      .selectFrom('api_idempotency_keys')
      .select(['request_hash'])
      .where('caller', '=', principal.subject)
      .where('idempotency_key', '=', idempotencyKey)
      .executeTakeFirst();
    const sealed = await sealProfile(deps.envelope, customerId, body.data);
    const key = await deps.dataKeys.key(sealed.dataKeyId);
    const requestHash = `${sealed.dataKeyId}:${fingerprint(key, body.data)}`;
    if (previous) {
      if (!sameFingerprint(previous.request_hash, requestHash)) {
        return sendProblem(res, {
          title: 'Idempotency-Key reused',
          status: 409,
          detail: 'This Idempotency-Key was used with a different request body.',
        });
      }
    } else {
      await deps.db
        .insertInto('api_idempotency_keys')
        .values({ caller: principal.subject, idempotency_key: idempotencyKey, request_hash: requestHash, workflow_id: workflowId })
        .onConflict((oc) => oc.columns(['caller', 'idempotency_key']).doNothing())
        .execute();
    }

    try {
      await deps.temporal.workflow.start<typeof registerCustomerWorkflow>('registerCustomerWorkflow', {
        taskQueue: deps.taskQueue,
        workflowId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ customer: sealed, requestedBy: principal.subject }],
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
    const purpose = required(req, PURPOSE, purposeHeader);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No customer ${customerId}.` });
    if (row.status === 'erased') return sendProblem(res, { title: 'Gone', status: 410, detail: `Customer ${customerId} was erased.` });
    // Audited before anything is decrypted: if the audit trail cannot record the read, nothing is read.
    await appendAuditEntry(deps.db, {
      idempotencyKey: `api:customer.read:${req.header('x-request-id') ?? crypto.randomUUID()}`,
      actor: principal.subject,
      action: 'customer.read',
      subjectType: 'customer',
      subjectId: customerId,
      purpose,
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
    const reason = required(req, PURPOSE, purposeHeader);
    const row = await findCustomer(deps.db, customerId);
    if (!row) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No customer ${customerId}.` });
    const workflowId = `customer-erasure:${customerId}`;
    try {
      await deps.temporal.workflow.start<typeof eraseCustomerWorkflow>('eraseCustomerWorkflow', {
        taskQueue: deps.taskQueue,
        workflowId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [{ customerId, requestedBy: principal.subject, reason }],
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

function sameFingerprint(stored: string, computed: string): boolean {
  const a = Buffer.from(stored);
  const b = Buffer.from(computed);
  return a.length === b.length && timingSafeEqual(a, b);
}
