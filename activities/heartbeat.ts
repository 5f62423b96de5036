import { Context } from '@temporalio/activity';

/** How often a Stripe activity tells Temporal it is alive while its HTTP call runs. */
const HEARTBEAT_EVERY_MS = 2_000;

/**
 * Wraps every activity of a factory so that it heartbeats while it runs. With the
 * `heartbeatTimeout` of its options, a worker that dies mid-call (crash, SIGKILL, lost
 * host) is noticed within seconds and the activity retried elsewhere with the same
 * idempotency key, instead of after the whole start-to-close timeout.
 */
export function heartbeating<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, run]) => [
      name,
      async (...args: never[]) => {
        const context = Context.current();
        context.heartbeat();
        const timer = setInterval(() => context.heartbeat(), HEARTBEAT_EVERY_MS);
        try {
          return await run(...args);
        } finally {
          clearInterval(timer);
        }
      },
    ]),
  ) as T;
}
