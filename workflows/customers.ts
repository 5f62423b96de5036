import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createAuditActivities } from '../activities/audit';
import type { createCustomerActivities, createStripeCustomerActivities } from '../activities/customers';
import type { SealedCustomer } from '../src/customers/customer-types';
import { LOCAL_STEP, stripeStep } from './activity-options';
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
