import { condition, defineQuery, defineSignal, setHandler } from '@temporalio/workflow';

/**
 * Stands where a subscription's workflow stands (`subscription:<id>`) and counts every
 * signal it receives per Stripe event id, without deduplicating: what the webhook path
 * delivers, exactly as often as it delivers it.
 */
export const SIGNAL_NAMES = ['paymentOutcome', 'renewalPaid', 'paymentFailed', 'subscriptionCanceled', 'paymentMethodUpdated'] as const;

export interface Received {
  /** Event id → how many times it arrived. */
  readonly counts: Record<string, number>;
  /** Event ids in arrival order. */
  readonly order: string[];
}

export const receivedQuery = defineQuery<Received>('received');

export async function signalRecorderWorkflow(): Promise<void> {
  const received: Received = { counts: {}, order: [] };
  for (const name of SIGNAL_NAMES) {
    setHandler(defineSignal<[{ eventId: string }]>(name), (event) => {
      received.counts[event.eventId] = (received.counts[event.eventId] ?? 0) + 1;
      received.order.push(event.eventId);
    });
  }
  setHandler(receivedQuery, () => received);
  await condition(() => false);
}
