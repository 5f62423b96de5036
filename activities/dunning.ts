import { ApplicationFailure } from '@temporalio/common';
import { sql } from 'kysely';
import Stripe from 'stripe';
import { appendAuditEntry } from '../src/audit/audit-dal';
import type { Config } from '../src/config/config';
import type { CipherContext } from '../src/crypto/ciphertext';
import type { Envelope } from '../src/crypto/envelope';
import { cell } from '../src/customers/customer-crypto';
import { findCustomer } from '../src/customers/customer-dal';
import { noticeAllowed } from '../src/customers/customer-consents';
import type { Db } from '../src/db/database';
import { policyFor } from '../src/dunning/dunning-policy';
import { invoicePaymentIntentId } from '../src/stripe/first-payment';
import { stripeFailure } from '../src/stripe/stripe-errors';
import { grantEntitlement, revokeEntitlements } from '../src/subscriptions/subscription-dal';
import type { Logger } from '../src/log';
import type { DunningPolicy } from '../workflows/dunning-contracts';
import { currencyLabel, dunningRecovered } from '../src/metrics/metrics';

/**
 * Dunning activities: the policy a campaign pins, its notices (an outbox with a pluggable
 * sender) and the suspension of entitlements, on the general task queue; the payment
 * retry on the rate-capped Stripe queue.
 */

/** A notice as a sender gets it: opaque ids, a template name, and the recipient on request (decrypted then, and audited). */
export interface OutgoingNotice {
  readonly id: string;
  readonly template: string;
  readonly subscriptionId: string;
  readonly invoiceId: string;
  readonly attempt: number;
  recipient(): Promise<string>;
}

/** Delivers a notice (e-mail, a CRM, a queue). Throwing makes the activity retry; `send` must tolerate a repeat of the same id. */
export interface NoticeSender {
  send(notice: OutgoingNotice): Promise<void>;
}

/** The default: sends nothing, logs the template and opaque ids only, and lets the outbox mark it sent. */
export function loggingNoticeSender(log: Pick<Logger, 'info'>): NoticeSender {
  return {
    async send(notice) {
      log.info({ noticeId: notice.id, template: notice.template, subscriptionId: notice.subscriptionId, invoiceId: notice.invoiceId, attempt: notice.attempt }, 'dunning notice');
    },
  };
}

export interface DunningActivityDeps {
  readonly db: Db;
  readonly envelope: Envelope;
  readonly config: Pick<Config, 'dunning'>;
  readonly noticeSender?: NoticeSender;
  readonly log?: Pick<Logger, 'info'>;
}

export interface QueueNoticeInput {
  readonly dunningId: string;
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly invoiceId: string;
  readonly attempt: number;
  readonly template: string;
}

function outboxCell(noticeId: string): CipherContext {
  return { table: 'notification_outbox', column: 'recipient', rowId: noticeId };
}

export function createDunningActivities(deps: DunningActivityDeps) {
  const sender = deps.noticeSender ?? loggingNoticeSender(deps.log ?? { info: () => undefined });
  return {
    /** The policy for the subscription's price as configured now: the campaign pins it by recording this result. */
    async resolveDunningPolicy(input: { readonly priceId: string }): Promise<DunningPolicy> {
      return policyFor(deps.config.dunning, input.priceId);
    },

    /**
     * Writes the notice to the outbox (the recipient's e-mail re-encrypted under the
     * customer's data key, bound to the outbox row) and hands it to the sender. Idempotent
     * per campaign and attempt: a retry finds the row and sends only if it is still pending.
     */
    async queueDunningNotice(input: QueueNoticeInput): Promise<{ id: string; status: 'sent' | 'skipped' }> {
      const id = `${input.dunningId}:notice-${input.attempt}`;
      let row = await deps.db.selectFrom('notification_outbox').select(['status', 'recipient']).where('id', '=', id).executeTakeFirst();
      if (!row) {
        const customer = await findCustomer(deps.db, input.customerId);
        // An erased customer has no e-mail left to write to; one who withdrew consent to
        // notifications gets the contractual ones only (customer-consents.ts).
        const recipient =
          customer && customer.status === 'active' && (await noticeAllowed(deps.db, customer.id, input.template))
            ? await deps.envelope.encrypt({ id: customer.id, region: customer.region }, await decryptEmail(deps, customer.id, customer.email, id), outboxCell(id))
            : null;
        await deps.db
          .insertInto('notification_outbox')
          .values({ id, customer_id: input.customerId, subscription_id: input.subscriptionId, invoice_id: input.invoiceId, template: input.template, recipient, status: recipient ? 'pending' : 'skipped', sent_at: null })
          .onConflict((oc) => oc.column('id').doNothing())
          .execute();
        row = await deps.db.selectFrom('notification_outbox').select(['status', 'recipient']).where('id', '=', id).executeTakeFirstOrThrow();
      }
      if (row.status !== 'pending') return { id, status: row.status };
      const sealed = row.recipient!;
      await deps.db.updateTable('notification_outbox').set({ attempts: sql<number>`attempts + 1` }).where('id', '=', id).execute();
      await sender.send({
        id,
        template: input.template,
        subscriptionId: input.subscriptionId,
        invoiceId: input.invoiceId,
        attempt: input.attempt,
        recipient: () => decryptEmail(deps, input.customerId, sealed, id, outboxCell(id)),
      });
      await deps.db.updateTable('notification_outbox').set({ status: 'sent', sent_at: new Date() }).where('id', '=', id).where('status', '=', 'pending').execute();
      return { id, status: 'sent' };
    },

    /**
     * Suspends the subscription's entitlements on behalf of one campaign. A second
     * campaign suspending the same subscription only records itself: nothing is revoked twice.
     */
    async suspendEntitlements(input: { readonly subscriptionId: string; readonly invoiceId: string }): Promise<{ revoked: number; alreadySuspended: boolean }> {
      return deps.db.transaction().execute(async (tx) => {
        // Campaigns of one subscription suspend one after the other.
        await sql`select pg_advisory_xact_lock(hashtext(${`entitlements:${input.subscriptionId}`}))`.execute(tx);
        const others = await tx.selectFrom('entitlement_suspensions').select('invoice_id').where('subscription_id', '=', input.subscriptionId).where('invoice_id', '!=', input.invoiceId).execute();
        await tx.insertInto('entitlement_suspensions').values({ subscription_id: input.subscriptionId, invoice_id: input.invoiceId }).onConflict((oc) => oc.doNothing()).execute();
        return { revoked: await revokeEntitlements(tx, input.subscriptionId), alreadySuspended: others.length > 0 };
      });
    },

    /**
     * Lifts one campaign's suspension; the entitlements come back when no other campaign
     * still suspends them and the subscription has not ended.
     */
    async restoreEntitlements(input: { readonly subscriptionId: string; readonly invoiceId: string; readonly customerId: string; readonly priceId: string }): Promise<{ restored: boolean }> {
      return deps.db.transaction().execute(async (tx) => {
        await sql`select pg_advisory_xact_lock(hashtext(${`entitlements:${input.subscriptionId}`}))`.execute(tx);
        await tx.deleteFrom('entitlement_suspensions').where('subscription_id', '=', input.subscriptionId).where('invoice_id', '=', input.invoiceId).execute();
        const remaining = await tx.selectFrom('entitlement_suspensions').select('invoice_id').where('subscription_id', '=', input.subscriptionId).execute();
        const subscription = await tx.selectFrom('subscriptions').select('status').where('id', '=', input.subscriptionId).executeTakeFirst();
        if (remaining.length > 0 || !subscription || subscription.status === 'canceled') return { restored: false };
        return { restored: await grantEntitlement(tx, input) };
      });
    },
  };
}

/** Decrypts a customer's e-mail for a notice, leaving an audit record like every decryption. */
async function decryptEmail(deps: DunningActivityDeps, customerId: string, blob: Buffer, noticeId: string, context: CipherContext = cell(customerId, 'email')): Promise<string> {
  const email = await deps.envelope.decrypt(blob, context);
  await appendAuditEntry(deps.db, {
    idempotencyKey: `${noticeId}:decrypt:${context.table}`,
    actor: 'dunning-notices',
    action: 'customer.decrypt',
    subjectType: 'customer',
    subjectId: customerId,
    purpose: 'dunning notice',
    details: { fields: 'email', noticeId },
  });
  return email;
}

// ---------------------------------------------------------------- Stripe

export interface RetryInvoicePaymentResult {
  readonly outcome: 'paid' | 'declined' | 'failed';
  /** Stripe's decline code (or error code) of a declined retry; never a message. */
  readonly declineCode: string | null;
}

export function createStripeDunningActivities(deps: { readonly stripe: Stripe }) {
  return {
    /**
     * The decline code of the invoice's last failed payment: `invoice.payment_failed`
     * does not carry it, and a hard decline (a stolen card) must not be retried for weeks.
     * Null when Stripe does not say.
     */
    async lastDeclineCode(input: { readonly invoiceId: string }): Promise<{ declineCode: string | null }> {
      try {
        const invoice = await deps.stripe.invoices.retrieve(input.invoiceId, { expand: ['payments'] });
        const intentId = invoicePaymentIntentId(invoice);
        if (!intentId) return { declineCode: null };
        const intent = await deps.stripe.paymentIntents.retrieve(intentId);
        const error = intent.last_payment_error;
        return { declineCode: error?.decline_code ?? error?.code ?? null };
      } catch (err) {
        throw stripeFailure(err, 'invoices.retrieve');
      }
    },

    /**
     * Retries the invoice's payment (`invoices.pay`) with the campaign's key for this
     * attempt. A decline is an outcome, not a failure: the workflow classifies it. An
     * invoice already paid (say, by the customer meanwhile) is `paid`; one voided or
     * uncollectible can no longer be paid and is `failed`.
     */
    async retryInvoicePayment(input: { readonly subscriptionId: string; readonly invoiceId: string; readonly idempotencyKey: string }): Promise<RetryInvoicePaymentResult> {
      let invoice: Stripe.Invoice;
      try {
        invoice = await deps.stripe.invoices.retrieve(input.invoiceId);
      } catch (err) {
        throw stripeFailure(err, 'invoices.retrieve');
      }
      if (invoice.status === 'paid') return { outcome: 'paid', declineCode: null };
      if (invoice.status === 'void' || invoice.status === 'uncollectible') return { outcome: 'failed', declineCode: invoice.status };
      try {
        const paid = await deps.stripe.invoices.pay(input.invoiceId, {}, { idempotencyKey: input.idempotencyKey });
        // Counted where this retry collected it; an invoice found paid already was counted (or paid) elsewhere.
        if (paid.status === 'paid') dunningRecovered.inc({ currency: currencyLabel(paid.currency) }, paid.amount_paid ?? 0);
        return paid.status === 'paid' ? { outcome: 'paid', declineCode: null } : { outcome: 'failed', declineCode: paid.status ?? null };
      } catch (err) {
        if (err instanceof Stripe.errors.StripeCardError) return { outcome: 'declined', declineCode: err.decline_code ?? err.code ?? 'card_declined' };
        if (err instanceof Stripe.errors.StripeInvalidRequestError && err.code === 'invoice_not_editable') {
          throw ApplicationFailure.create({ type: 'InvoiceNotPayable', nonRetryable: true, message: `invoice ${input.invoiceId} cannot be paid` });
        }
        throw stripeFailure(err, 'invoices.pay');
      }
    },
  };
}
