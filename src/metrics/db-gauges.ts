import { sql } from 'kysely';
import type { Db } from '../db/database';
import { keyRotationProgress, keyRotationRunning, keyRotationsFinished, metricsCollectErrors, relayLag, relayPending } from './metrics';

/** Read at most this often, however often Prometheus scrapes (several scrapers, a dashboard refreshing). */
const REFRESH_MS = 5_000;
const QUERY_TIMEOUT_MS = 2_000;

/**
 * The gauges whose truth is in PostgreSQL, shared by every process: the relay's pending
 * events and the oldest one's age, and key rotation progress. Served by API processes (they
 * run the relay); each reads the same rows, so dashboards take `max` across instances.
 * Returns the refresh to run before a scrape; a database that does not answer in time
 * leaves the last values and counts `ledgerlock_metrics_collect_errors_total`.
 */
export function databaseGauges(db: Db): () => Promise<void> {
  let last = 0;
  let inFlight: Promise<void> | undefined;
  const refresh = async () => {
    const relay = await db
      .selectFrom('stripe_events')
      .select([sql<string>`count(*)`.as('pending'), sql<number | null>`extract(epoch from now() - min(received_at))`.as('lag')])
      .where('status', '=', 'pending')
      .executeTakeFirstOrThrow();
    relayPending.set(Number(relay.pending));
    relayLag.set(relay.lag === null ? 0 : Math.max(0, Number(relay.lag)));

    const statuses = await db.selectFrom('key_rotations').select(['status', sql<string>`count(*)`.as('n')]).groupBy('status').execute();
    for (const status of ['running', 'completed', 'failed'] as const) {
      keyRotationsFinished.set({ status }, Number(statuses.find((s) => s.status === status)?.n ?? 0));
    }
    const running = await db
      .selectFrom('key_rotations')
      .select(['total_keys', 'rewrapped_keys', 'verified_keys'])
      .where('status', '=', 'running')
      .orderBy('started_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    keyRotationRunning.set(running ? 1 : 0);
    const ratio = (done: number) => (!running || running.total_keys === 0 ? 1 : Math.min(1, done / running.total_keys));
    keyRotationProgress.set({ phase: 'rewrapped' }, ratio(running?.rewrapped_keys ?? 0));
    keyRotationProgress.set({ phase: 'verified' }, ratio(running?.verified_keys ?? 0));
  };
  return async () => {
    if (Date.now() - last < REFRESH_MS) return inFlight;
    last = Date.now();
    inFlight = withTimeout(refresh(), QUERY_TIMEOUT_MS).catch(() => {
      metricsCollectErrors.inc();
    });
    return inFlight;
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
