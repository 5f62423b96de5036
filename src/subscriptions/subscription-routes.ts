import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Router, type Request } from 'express';
import { z } from 'zod';
import { stripeId, stripeIdPattern } from '../stripe/stripe-ids';
import type { Principal } from '../auth/scopes';
import type { Envelope } from '../crypto/envelope';
import type { DataKeys } from '../crypto/data-keys';
import { sealProfile } from '../customers/customer-crypto';
import { customerProfileSchema, type SealedCustomer } from '../customers/customer-types';
import type { Db } from '../db/database';
import type { Authorize } from '../http/auth';
import { claimIdempotencyKey, claimIdempotencyKeyOfIds, idempotencyKeyOf, idFor, recordIdempotentResponse } from '../http/idempotency';
import { HttpProblem, sendProblem, validationProblem } from '../http/problem';
import { logFields } from '../http/request-log';
import {
  cancelSubscriptionUpdate,
  refundInvoiceUpdate,
  SUBSCRIPTION_ID_PATTERN,
  subscriptionStateQuery,
  subscriptionWorkflowId,
  type RefundResult,
  type SubscriptionView,
} from '../../workflows/subscription-contracts';
import type { createSubscriptionWorkflow } from '../../workflows/subscriptions';
import { findSubscription } from './subscription-dal';
import { metadataCell } from './subscription-types';

export interface SubscriptionRouteDeps {
  readonly db: Db;
  readonly envelope: Envelope;
  readonly dataKeys: DataKeys;
  readonly temporal: Pick<Client, 'workflow'>;
  readonly taskQueue: string;
  readonly paymentWindowSeconds: number;
  readonly authorize: Authorize;
}

/** The body of POST /v1/subscriptions. */
export const createSubscriptionBody = z
  .object({
    customer: customerProfileSchema,
    priceId: stripeId('price', 'price'),
    paymentMethodId: z.string().regex(stripeIdPattern('pm'), 'must be a Stripe payment method id (pm_…); card data is never accepted'),
    trialDays: z.number().int().min(1).max(730).optional(),
    metadata: z
      .record(z.string().min(1).max(40).regex(/^(?!ledgerlock_)/, 'must not start with ledgerlock_'), z.string().max(500))
      .refine((m) => Object.keys(m).length <= 20, 'at most 20 keys')
      .optional(),
  })
  .strict();

const cancelBody = z.object({ atPeriodEnd: z.boolean().default(true) }).strict();
const refundBody = z
  .object({
    invoiceId: stripeId('in', 'invoice'),
    amount: z.number().int().positive().optional(),
  })
  .strict();
const subscriptionIdParam = z.string().regex(SUBSCRIPTION_ID_PATTERN, 'must be a Ledgerlock subscription id (sub_ll_…)');

/** Workflow-side refusals (update validators, business rules) as HTTP problems. */
const UPDATE_REFUSALS: Record<string, number> = {
  SubscriptionNotActive: 409,
  SubscriptionAlreadyCanceled: 409,
  InvalidCancelRequest: 422,
  InvalidRefundRequest: 422,
  InvoiceNotRefundable: 422,
  RefundExceedsPayment: 422,
  StripeInvalidRequest: 422,
  StripeCardDeclined: 422,
};

function subscriptionIdOf(req: Request): string {
  const parsed = subscriptionIdParam.safeParse(req.params.id);
  if (!parsed.success) throw validationProblem(parsed.error, 'path.id');
  return parsed.data;
}

/** Runs an update on the subscription's workflow, turning its refusals into problems. */
async function update<T>(run: () => Promise<T>, subscriptionId: string): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw new HttpProblem({ title: 'Not Found', status: 404, detail: `No running subscription ${subscriptionId}.` });
    }
    const failure = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
    if (failure instanceof ApplicationFailure && failure.type && UPDATE_REFUSALS[failure.type]) {
      throw new HttpProblem({ title: 'Request refused', status: UPDATE_REFUSALS[failure.type]!, detail: failure.message, type: `urn:ledgerlock:${failure.type}` });
    }
    throw err;
  }
}

export function createSubscriptionRouter(deps: SubscriptionRouteDeps): Router {
  const router = Router();

  router.post('/v1/subscriptions', ...deps.authorize('subscriptions:write'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const idempotencyKey = idempotencyKeyOf(req);
    const body = createSubscriptionBody.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const subscriptionId = idFor('sub_ll_', principal.subject, idempotencyKey);
    const customerId = idFor('cust_', principal.subject, `subscription:${idempotencyKey}`);
    const workflowId = subscriptionWorkflowId(subscriptionId);
    logFields(res, { subscriptionId, customerId, workflowId });
    const customer = await sealProfile(deps.envelope, customerId, body.data.customer);
    await claimIdempotencyKey(deps, { caller: res.locals.actor, idempotencyKey, dataKeyId: customer.dataKeyId, body: body.data, workflowId });
    try {
      await deps.temporal.workflow.start<typeof createSubscriptionWorkflow>('createSubscriptionWorkflow', {
        taskQueue: deps.taskQueue,
        workflowId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [
          {
            subscriptionId,
            customer,
            priceId: body.data.priceId,
            paymentMethodId: body.data.paymentMethodId,
            ...(body.data.trialDays ? { trialDays: body.data.trialDays } : {}),
            ...(body.data.metadata ? { sealedMetadata: await sealMetadata(deps.envelope, customer, subscriptionId, body.data.metadata) } : {}),
            requestedBy: res.locals.actor,
            paymentWindowSeconds: deps.paymentWindowSeconds,
          },
        ],
      });
    } catch (err) {
      // The first request (or a concurrent retry) started it: same saga, same answer.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    res.status(202).location(`/v1/subscriptions/${subscriptionId}`).json({ subscriptionId, workflowId, status: 'pending' });
  });

  router.get('/v1/subscriptions/:id', ...deps.authorize('subscriptions:read'), async (req, res) => {
    const subscriptionId = subscriptionIdOf(req);
    const handle = deps.temporal.workflow.getHandle(subscriptionWorkflowId(subscriptionId));
    // While its workflow runs, it knows best (saga step, pending payment); afterwards PostgreSQL does.
    const running = await handle
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch((err: unknown) => {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      });
    if (running) {
      const view: SubscriptionView = await handle.query(subscriptionStateQuery);
      return void res.json({ ...view, source: 'workflow' });
    }
    const row = await findSubscription(deps.db, subscriptionId);
    if (!row) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No subscription ${subscriptionId}.` });
    res.json({
      subscriptionId: row.id,
      customerId: row.customer_id,
      priceId: row.price_id,
      status: row.status,
      sagaStep: row.saga_step,
      stripeSubscriptionId: row.stripe_subscription_id,
      cancelAtPeriodEnd: row.cancel_at_period_end,
      failure: row.failure_type ? { type: row.failure_type, reason: row.failure_reason } : null,
      source: 'database',
    });
  });

  router.post('/v1/subscriptions/:id/cancel', ...deps.authorize('subscriptions:write'), async (req, res) => {
    const subscriptionId = subscriptionIdOf(req);
    const body = cancelBody.safeParse(req.body ?? {});
    if (!body.success) throw validationProblem(body.error, 'body');
    const handle = deps.temporal.workflow.getHandle(subscriptionWorkflowId(subscriptionId));
    const view = await update(
      () => handle.executeUpdate(cancelSubscriptionUpdate, { args: [{ atPeriodEnd: body.data.atPeriodEnd, requestedBy: res.locals.actor }] }),
      subscriptionId,
    );
    res.json(view);
  });

  router.post('/v1/subscriptions/:id/refunds', ...deps.authorize('refunds:write'), async (req, res) => {
    const principal = res.locals.principal as Principal;
    const subscriptionId = subscriptionIdOf(req);
    const idempotencyKey = idempotencyKeyOf(req);
    const body = refundBody.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const requestId = idFor('refund_', principal.subject, idempotencyKey);
    const workflowId = subscriptionWorkflowId(subscriptionId);
    // The key is bound to this subscription and body for good, as on every route: another body
    // is 409. The answer is kept with it, since the workflow remembers only its latest refunds
    // and Stripe forgets its idempotency key after a day: a retry, however late, refunds nothing.
    const claim = { caller: res.locals.actor, idempotencyKey };
    const claimed = await claimIdempotencyKeyOfIds(deps.db, { ...claim, body: { subscriptionId, ...body.data }, workflowId });
    if (claimed.response !== null) return void res.status(201).json(claimed.response);
    const handle = deps.temporal.workflow.getHandle(workflowId);
    const refund: RefundResult = await update(
      () =>
        handle.executeUpdate(refundInvoiceUpdate, {
          // The update id dedupes a retried request at Temporal; the request id at Stripe.
          updateId: requestId,
          args: [{ invoiceId: body.data.invoiceId, ...(body.data.amount ? { amount: body.data.amount } : {}), requestId, requestedBy: res.locals.actor }],
        }),
      subscriptionId,
    );
    await recordIdempotentResponse(deps.db, claim, refund);
    res.status(201).json(refund);
  });

  return router;
}

/** Metadata is free text: sealed under the customer's data key, so an erasure shreds it wherever it went. */
async function sealMetadata(envelope: Envelope, customer: SealedCustomer, subscriptionId: string, metadata: Record<string, string>): Promise<string> {
  const blob = await envelope.encrypt({ id: customer.customerId, region: customer.region }, JSON.stringify(metadata), metadataCell(subscriptionId));
  return blob.toString('base64');
}
