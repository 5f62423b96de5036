import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../db/database';
import { errorMessage, type Logger } from '../log';
import { relayDeliveries } from '../metrics/metrics';
import { findSubscription } from '../subscriptions/subscription-dal';
import { leaseDueEvents, markDelivered, markRetry, markUndeliverable, postponeEvents, pruneStripeEvents, type PendingStripeEvent } from './webhook-dal';

/**
 * The outbox relay: delivers recorded Stripe events to their workflows as signals. The
 * webhook route only records (and acknowledges); this loop leases due rows (`FOR UPDATE
 * SKIP LOCKED` inside one short UPDATE that moves their next attempt past the lease),
 * signals with no transaction open, then marks each delivered, so several API processes
 * share the work and none signals a row another holds. When Temporal is unreachable the
 * rows stay pending and are retried with backoff; nothing is dropped. A crash between a
 * signal and its mark redelivers that signal once the lease runs out: the workflows ignore
 * an event id they have applied, so that is harmless.
 *
 * Events of one workflow go out one at a time, oldest first; different workflows in
 * parallel. Order is a courtesy: the workflows never let an older event undo a newer one.
 */
export interface WebhookRelayOptions {
  readonly db: Db;
  readonly temporal: Pick<Client, 'workflow' | 'connection'>;
  readonly log: Logger;
  /** Rows claimed per transaction (default 100). */
  readonly batchSize?: number;
  /** Workflows signalled at once within a batch (default 16). */
  readonly concurrency?: number;
  /** How often an idle relay looks for due rows it was not told about (default 1 s). */
  readonly pollIntervalMs?: number;
  /** Longest wait between attempts of one event (default 60 s); the first retry waits 250 ms. */
  readonly maxBackoffMs?: number;
  /** How long a leased event is kept from other relays while this one signals it (default 60 s). */
  readonly leaseMs?: number;
  /** How long a signal may take before the attempt counts as failed (default 10 s). */
  readonly signalTimeoutMs?: number;
  /** An event whose workflow never appears is given up (undeliverable) after this long (default 72 h, Stripe's own redelivery window). */
  readonly giveUpAfterMs?: number;
  /** Delivered and ignored events are pruned after this many days (default 30). */
  readonly retentionDays?: number;
}

export interface WebhookRelay {
  /** Something was recorded: look now rather than at the next poll. */
  kick(): void;
  /** Finishes the batch in hand (its transaction commits), then stops. */
  stop(): Promise<void>;
}

const FIRST_RETRY_MS = 250;
const DEFAULT_LEASE_MS = 60_000;
const PRUNE_EVERY_MS = 60 * 60 * 1000;

export function startWebhookRelay(options: WebhookRelayOptions): WebhookRelay {
  const batchSize = options.batchSize ?? 100;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  let running = true;
  let wake: (() => void) | undefined;
  let kicked = false;
  let lastPrune = 0;

  const sleep = () =>
    new Promise<void>((resolve) => {
      if (kicked || !running) return resolve();
      const timer = setTimeout(done, pollIntervalMs);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  const loop = (async () => {
    while (running) {
      kicked = false;
      let claimed = 0;
      try {
        claimed = await relayBatch(options, batchSize);
        if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
          lastPrune = Date.now();
          const days = options.retentionDays ?? 30;
          const pruned = await pruneStripeEvents(options.db, new Date(Date.now() - days * 86_400_000));
          if (pruned > 0) options.log.info({ pruned, retentionDays: days }, 'stripe events pruned');
        }
      } catch (err) {
        // PostgreSQL unreachable, most likely: the rows are safe there; try again at the next poll.
        options.log.warn({ reason: errorMessage(err) }, 'webhook relay batch failed');
      }
      if (claimed < batchSize) await sleep();
    }
  })();

  return {
    kick() {
      kicked = true;
      wake?.();
    },
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
  };
}

/**
 * One pass: lease due events (a short statement of its own), signal them with no
 * transaction open, then settle each outcome in a statement of its own. Returns how many
 * were leased.
 */
export async function relayBatch(options: WebhookRelayOptions, batchSize: number): Promise<number> {
  const events = await leaseDueEvents(options.db, batchSize, options.leaseMs ?? DEFAULT_LEASE_MS);
  if (events.length === 0) return 0;
  const byWorkflow = new Map<string, PendingStripeEvent[]>();
  for (const event of events) byWorkflow.set(event.workflowId, [...(byWorkflow.get(event.workflowId) ?? []), event]);

  const delivered: string[] = [];
  const queue = [...byWorkflow.values()];
  const deliverGroup = async (group: PendingStripeEvent[]) => {
    for (const [index, event] of group.entries()) {
      const outcome = await deliver(options, event);
      relayDeliveries.inc({ outcome: outcome.kind });
      if (outcome.kind === 'delivered') {
        delivered.push(event.eventId);
        continue;
      }
      if (outcome.kind === 'undeliverable') {
        await markUndeliverable(options.db, event.eventId, outcome.reason);
        options.log.warn({ eventId: event.eventId, workflowId: event.workflowId, reason: outcome.reason }, 'stripe event undeliverable');
        continue;
      }
      // No point signalling a workflow that just failed: the rest of its events wait as long as this one.
      // They may then overtake it; the workflow copes with any order.
      const retryInMs = Math.min(FIRST_RETRY_MS * 2 ** Math.min(event.attempts, 16), options.maxBackoffMs ?? 60_000);
      await markRetry(options.db, event.eventId, outcome.reason, retryInMs);
      await postponeEvents(options.db, group.slice(index + 1).map((e) => e.eventId), retryInMs);
      options.log.warn({ eventId: event.eventId, attempts: event.attempts + 1, retryInMs, reason: outcome.reason }, 'stripe event delivery failed; will retry');
      return;
    }
  };
  const workers = Array.from({ length: Math.min(options.concurrency ?? 16, queue.length) }, async () => {
    for (let group = queue.shift(); group; group = queue.shift()) await deliverGroup(group);
  });
  // A database outage mid-way leaves the rest leased: they come due again when the lease runs out.
  await Promise.all(workers).finally(() => markDelivered(options.db, delivered));
  return events.length;
}

type Outcome = { kind: 'delivered' } | { kind: 'retry'; reason: string } | { kind: 'undeliverable'; reason: string };

async function deliver(options: WebhookRelayOptions, event: PendingStripeEvent): Promise<Outcome> {
  const deadline = Date.now() + (options.signalTimeoutMs ?? 10_000);
  try {
    await options.temporal.connection.withDeadline(deadline, () => options.temporal.workflow.getHandle(event.workflowId).signal(event.signalName, event.signalArgs));
    return { kind: 'delivered' };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) return { kind: 'retry', reason: `temporal: ${errorMessage(err).slice(0, 200)}` };
    // No running workflow: it ended (the event comes too late to matter), or it has not started yet.
    const subscription = event.subscriptionId ? await findSubscription(options.db, event.subscriptionId) : undefined;
    if (subscription && (subscription.status === 'canceled' || subscription.status === 'failed')) {
      return { kind: 'undeliverable', reason: `subscription ${subscription.status}: its workflow has ended` };
    }
    if (Date.now() - event.receivedAt.getTime() > (options.giveUpAfterMs ?? 72 * 3600_000)) {
      return { kind: 'undeliverable', reason: 'no workflow for this subscription' };
    }
    return { kind: 'retry', reason: 'workflow not found yet' };
  }
}
