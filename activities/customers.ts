import { Context } from '@temporalio/activity';
import type Stripe from 'stripe';
import { appendAuditEntry } from '../src/audit/audit-dal';
import type { Config } from '../src/config/config';
import type { DataKeys } from '../src/crypto/data-keys';
import type { Envelope } from '../src/crypto/envelope';
import { openProfile } from '../src/customers/customer-crypto';
import { findCustomer, insertCustomer, markCustomerErased, setStripeCustomerId } from '../src/customers/customer-dal';
import { retentionCandidates, retentionCutoff } from '../src/customers/customer-retention';
import type { SealedCustomer } from '../src/customers/customer-types';
import type { Db } from '../src/db/database';
import { isResourceMissing, stripeFailure } from '../src/stripe/stripe-errors';
import { ApplicationFailure } from '@temporalio/common';
import { RETENTION_ERASURE_REASON } from '../workflows/customer-contracts';

export interface CustomerActivityDeps {
  readonly db: Db;
  readonly envelope: Envelope;
  readonly dataKeys: DataKeys;
  readonly stripe: Stripe;
  readonly config: Pick<Config, 'stripeSharedFields' | 'customerRetentionDays'>;
}

export interface StripeCustomerInput {
  readonly customerId: string;
  /** Deterministic: workflow id + step. */
  readonly idempotencyKey: string;
}

function customerMissing(customerId: string): ApplicationFailure {
  return ApplicationFailure.create({ type: 'CustomerNotFound', nonRetryable: true, message: `customer ${customerId} does not exist` });
}

/** Customer activities that stay inside our walls (database, KMS). */
export function createCustomerActivities(deps: Pick<CustomerActivityDeps, 'db' | 'dataKeys' | 'config'>) {
  return {
    /** Stores the already-sealed customer; storing it again is a no-op. */
    async storeCustomer(input: { readonly customer: SealedCustomer }): Promise<void> {
      await insertCustomer(deps.db, input.customer);
    },

    /**
     * Crypto-shreds the customer: their data keys are destroyed, so every ciphertext of
     * theirs (rows, workflow payloads, backups) is unreadable from now on. Idempotent.
     */
    async shredCustomer(input: { readonly customerId: string }): Promise<{ destroyedKeyIds: string[] }> {
      const destroyedKeyIds = await deps.dataKeys.destroyForCustomer(input.customerId);
      await markCustomerErased(deps.db, input.customerId);
      return { destroyedKeyIds };
    },

    /**
     * The next page of customers past their retention period at `asOf` (CUSTOMER_RETENTION_DAYS,
     * as this worker is configured), in id order. Each one's erasure request is audited here,
     * before the workflow starts it, as DELETE /v1/customers/:id audits its own; a retried
     * attempt finds the same entries by their keys.
     */
    async selectRetentionErasures(input: { readonly asOf: string; readonly afterId?: string; readonly limit: number }): Promise<{ customerIds: string[] }> {
      const retentionDays = deps.config.customerRetentionDays;
      const cutoff = retentionCutoff(new Date(input.asOf), retentionDays);
      const candidates = await retentionCandidates(deps.db, { cutoff, limit: input.limit, ...(input.afterId === undefined ? {} : { afterId: input.afterId }) });
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? 'unknown';
      for (const candidate of candidates) {
        await appendAuditEntry(deps.db, {
          idempotencyKey: `${workflowId}:customer.erasure_requested:${candidate.customerId}`,
          actor: `workflow:${workflowId}`,
          action: 'customer.erasure_requested',
          subjectType: 'customer',
          subjectId: candidate.customerId,
          purpose: RETENTION_ERASURE_REASON,
          details: { retentionDays, lastActivityAt: candidate.lastActivityAt.toISOString() },
        });
      }
      return { customerIds: candidates.map((candidate) => candidate.customerId) };
    },
  };
}

/** Customer activities that call Stripe: registered on the rate-capped Stripe task queue only. */
export function createStripeCustomerActivities(deps: CustomerActivityDeps) {
  return {
    /**
     * Creates the customer at Stripe with only the fields configured to be shared (data
     * minimisation) and our opaque id. Decrypting them for Stripe is an export of personal
     * data, so it is audited first.
     */
    async createStripeCustomer(input: StripeCustomerInput): Promise<{ stripeCustomerId: string }> {
      const row = await findCustomer(deps.db, input.customerId);
      if (!row) throw customerMissing(input.customerId);
      if (row.stripe_customer_id) return { stripeCustomerId: row.stripe_customer_id };
      const profile = await openProfile(deps.envelope, row);
      const shared = deps.config.stripeSharedFields;
      await appendAuditEntry(deps.db, {
        idempotencyKey: `${input.idempotencyKey}:export`,
        actor: `workflow:${Context.current().info.workflowExecution?.workflowId ?? 'unknown'}`,
        action: 'customer.export',
        subjectType: 'customer',
        subjectId: input.customerId,
        purpose: 'create the Stripe customer',
        details: { recipient: 'stripe', fields: shared.join(',') },
      });
      let customer: Stripe.Customer;
      try {
        customer = await deps.stripe.customers.create(
          {
            ...(shared.includes('email') ? { email: profile.email } : {}),
            ...(shared.includes('name') ? { name: profile.name } : {}),
            ...(shared.includes('phone') && profile.phone ? { phone: profile.phone } : {}),
            ...(shared.includes('address') && profile.address
              ? {
                  address: {
                    line1: profile.address.line1,
                    line2: profile.address.line2 ?? '',
                    city: profile.address.city,
                    postal_code: profile.address.postalCode,
                    state: profile.address.state ?? '',
                    country: profile.country,
                  },
                }
              : {}),
            metadata: { ledgerlock_customer_id: input.customerId },
          },
          { idempotencyKey: input.idempotencyKey },
        );
      } catch (err) {
        throw stripeFailure(err, 'customers.create');
      }
      await setStripeCustomerId(deps.db, input.customerId, customer.id);
      return { stripeCustomerId: customer.id };
    },

    /** Deletes the Stripe customer, if there is one; an already deleted one counts as done. */
    async deleteStripeCustomer(input: StripeCustomerInput): Promise<{ deleted: boolean }> {
      const row = await findCustomer(deps.db, input.customerId);
      if (!row?.stripe_customer_id) return { deleted: false };
      try {
        await deps.stripe.customers.del(row.stripe_customer_id, {}, { idempotencyKey: input.idempotencyKey });
      } catch (err) {
        if (isResourceMissing(err)) return { deleted: false };
        throw stripeFailure(err, 'customers.del');
      }
      return { deleted: true };
    },
  };
}
