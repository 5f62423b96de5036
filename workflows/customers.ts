import { continueAsNew, ParentClosePolicy, proxyActivities, startChild, workflowInfo } from '@temporalio/workflow';
import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { createAuditActivities } from '../activities/audit';
import type { createCustomerActivities, createStripeCustomerActivities } from '../activities/customers';
import type { SealedCustomer } from '../src/customers/customer-types';
import { LOCAL_STEP, stripeStep } from './activity-options';
import { erasureWorkflowId, RETENTION_ERASURE_REASON, type CustomerRetentionInput, type CustomerRetentionResult } from './customer-contracts';
import { Saga } from './saga';

type CustomerActivities = ReturnType<typeof createCustomerActivities>;
type StripeCustomerActivities = ReturnType<typeof createStripeCustomerActivities>;
type AuditActivities = ReturnType<typeof createAuditActivities>;

const local = proxyActivities<CustomerActivities & AuditActivities>(LOCAL_STEP);
const stripe = () => proxyActivities<StripeCustomerActivities>(stripeStep());

export interface RegisterCustomerInput {
  /** Personal fields arrive sealed under the customer's own data key. */
  readonly customer: SealedCustomer;
  /** Service identity that asked for it (audit actor). */
  readonly requestedBy: string;
}

export interface RegisterCustomerResult {
  readonly customerId: string;
  readonly stripeCustomerId: string;
}

/** Every step and compensation leaves an audit entry, keyed by workflow id and step. */
function audit(step: string, action: 'saga.step' | 'saga.compensation', customerId: string) {
  const { workflowId } = workflowInfo();
  return local.recordAudit({
    idempotencyKey: `${workflowId}:${action}:${step}`,
    actor: `workflow:${workflowId}`,
    action,
    subjectType: 'customer',
    subjectId: customerId,
    details: { step },
  });
}

/**
 * Registers a customer: store them (encrypted), then create them at Stripe. If a step
 * fails for good, what was done is undone, last first: the Stripe customer is deleted and
 * the stored customer crypto-shredded.
 */
export async function registerCustomerWorkflow(input: RegisterCustomerInput): Promise<RegisterCustomerResult> {
  const { workflowId } = workflowInfo();
  const customerId = input.customer.customerId;
  const saga = new Saga();
  try {
    saga.onRollback('shred customer', async () => {
      await local.shredCustomer({ customerId });
      await audit('shred customer', 'saga.compensation', customerId);
    });
    await local.storeCustomer({ customer: input.customer });
    await audit('store customer', 'saga.step', customerId);

    saga.onRollback('delete Stripe customer', async () => {
      await stripe().deleteStripeCustomer({ customerId, idempotencyKey: `${workflowId}:delete-stripe-customer` });
      await audit('delete Stripe customer', 'saga.compensation', customerId);
    });
    const { stripeCustomerId } = await stripe().createStripeCustomer({ customerId, idempotencyKey: `${workflowId}:create-stripe-customer` });
    await audit('create Stripe customer', 'saga.step', customerId);
    return { customerId, stripeCustomerId };
  } catch (err) {
    await saga.compensate();
    throw err;
  }
}

export interface EraseCustomerInput {
  readonly customerId: string;
  readonly requestedBy: string;
  readonly reason: string;
}

export interface EraseCustomerResult {
  readonly dataKeysDestroyed: number;
  readonly stripeCustomerDeleted: boolean;
}

/**
 * Erases a customer, forward only: destroy their data keys first (from that moment every
 * ciphertext of theirs, rows and workflow histories alike, is unreadable), then delete
 * them at Stripe, then record that it happened.
 */
export async function eraseCustomerWorkflow(input: EraseCustomerInput): Promise<EraseCustomerResult> {
  const { workflowId } = workflowInfo();
  const { destroyedKeyIds } = await local.shredCustomer({ customerId: input.customerId });
  const { deleted } = await stripe().deleteStripeCustomer({ customerId: input.customerId, idempotencyKey: `${workflowId}:delete-stripe-customer` });
  await local.recordAudit({
    idempotencyKey: `${workflowId}:erased`,
    actor: input.requestedBy,
    action: 'customer.erased',
    subjectType: 'customer',
    subjectId: input.customerId,
    purpose: input.reason,
    details: { dataKeysDestroyed: destroyedKeyIds.length, stripeCustomerDeleted: deleted },
  });
  return { dataKeysDestroyed: destroyedKeyIds.length, stripeCustomerDeleted: deleted };
}

/** Customers asked of the database at a time (by default), and pages per run before continuing as new. */
const RETENTION_PAGE_SIZE = 100;
const RETENTION_PAGES_PER_RUN = 10;
const RETENTION_MAX_PAGE_SIZE = 1_000;

/**
 * Erases every customer past their retention period, through the same erasure workflow
 * (and workflow id) as DELETE /v1/customers/:id, with the reason `retention`. The erasures
 * are started, not awaited: each one runs, retries and is watched on its own, and outlives
 * this workflow. A customer whose erasure already runs or has run is left to it. The cutoff
 * is fixed when the run begins and kept across continue-as-new.
 */
export async function customerRetentionWorkflow(input: CustomerRetentionInput): Promise<CustomerRetentionResult> {
  const pageSize = input.pageSize ?? RETENTION_PAGE_SIZE;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > RETENTION_MAX_PAGE_SIZE) {
    throw ApplicationFailure.create({ type: 'InvalidRetentionInput', nonRetryable: true, message: `pageSize must be a whole number from 1 to ${RETENTION_MAX_PAGE_SIZE}` });
  }
  if (input.asOf !== undefined && Number.isNaN(Date.parse(input.asOf))) {
    throw ApplicationFailure.create({ type: 'InvalidRetentionInput', nonRetryable: true, message: 'asOf must be an ISO 8601 time' });
  }
  const asOf = input.asOf ?? new Date().toISOString();
  let afterId = input.afterId;
  let erasuresStarted = input.erasuresStarted ?? 0;
  for (let page = 0; page < RETENTION_PAGES_PER_RUN; page++) {
    const { customerIds } = await local.selectRetentionErasures({ asOf, limit: pageSize, ...(afterId === undefined ? {} : { afterId }) });
    for (const customerId of customerIds) {
      try {
        await startChild(eraseCustomerWorkflow, {
          workflowId: erasureWorkflowId(customerId),
          // As DELETE does: a failed erasure is run again, a completed one never.
          workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
          parentClosePolicy: ParentClosePolicy.ABANDON,
          args: [{ customerId, requestedBy: input.requestedBy, reason: RETENTION_ERASURE_REASON }],
        });
        erasuresStarted++;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
    }
    if (customerIds.length < pageSize) return { asOf, erasuresStarted };
    afterId = customerIds.at(-1);
  }
  return continueAsNew<typeof customerRetentionWorkflow>({ ...input, asOf, erasuresStarted, ...(afterId === undefined ? {} : { afterId }) });
}
