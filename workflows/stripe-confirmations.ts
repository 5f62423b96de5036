import { ActivityFailure, log, proxyActivities } from '@temporalio/workflow';
import type { ConfirmInvoicePaymentInput, createStripeSubscriptionActivities, InvoicePaymentFact } from '../activities/subscriptions';
import { stripeConfirmationStep } from './activity-options';

type ConfirmationActivities = Pick<ReturnType<typeof createStripeSubscriptionActivities>, 'confirmInvoicePayment' | 'confirmSubscriptionCanceled'>;

/**
 * Stripe's word on what a signal claimed (see PAYMENT_FACTS_PATCH), asked until Stripe
 * answers. A refusal for good (an invalid request) counts as no confirmation, never as a
 * failure of the workflow. Only callable inside a workflow.
 */
export function stripeConfirmations() {
  const ask = proxyActivities<ConfirmationActivities>(stripeConfirmationStep());
  return {
    async invoicePayment(input: ConfirmInvoicePaymentInput): Promise<InvoicePaymentFact> {
      try {
        return await ask.confirmInvoicePayment(input);
      } catch (err) {
        if (!(err instanceof ActivityFailure)) throw err;
        log.warn('Stripe refused to confirm an invoice payment', { invoiceId: input.invoiceId });
        return { invoiceId: input.invoiceId, status: 'not_ours', amountPaid: null, currency: null, paidAt: null, declineCode: null };
      }
    },
    async canceled(subscriptionId: string): Promise<boolean> {
      try {
        return (await ask.confirmSubscriptionCanceled({ subscriptionId })).canceled;
      } catch (err) {
        if (!(err instanceof ActivityFailure)) throw err;
        log.warn('Stripe refused to confirm a cancellation', { subscriptionId });
        return false;
      }
    },
  };
}
