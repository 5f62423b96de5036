import { sql } from 'kysely';
import type { BucketLimit } from '../config/config';
import type { Db } from '../db/database';

/** What taking a token from a bucket came to; `retryAfterSeconds` is 0 when it was taken. */
export interface BucketVerdict {
  readonly allowed: boolean;
  readonly retryAfterSeconds: number;
}

/**
 * Takes one token from the bucket `key` in one statement, so concurrent requests of every
 * API process serialise on the row and none of them reads a stale count. The refill is
 * computed from PostgreSQL's clock (`now()`), so the processes' own clocks do not matter.
 * A new bucket starts full, less the token this request takes.
 */
export async function takeBucketToken(db: Db, key: string, limit: BucketLimit): Promise<BucketVerdict> {
  const burst = sql`${limit.burst}::double precision`;
  const refilled = sql`least(${burst}, b.tokens + greatest(0, extract(epoch from now() - b.refilled_at)) * ${limit.perSecond}::double precision)`;
  const { rows } = await sql<{ tokens: number; allowed: boolean }>`
    insert into rate_limit_buckets as b (key, tokens, refilled_at, allowed)
    values (${key}, ${burst} - 1, now(), true)
    on conflict (key) do update set
      tokens = case when ${refilled} >= 1 then ${refilled} - 1 else ${refilled} end,
      allowed = ${refilled} >= 1,
      refilled_at = now()
    returning tokens, allowed`.execute(db);
  const row = rows[0]!;
  return row.allowed ? { allowed: true, retryAfterSeconds: 0 } : { allowed: false, retryAfterSeconds: (1 - row.tokens) / limit.perSecond };
}

/** Deletes buckets untouched for `idleSeconds`: any of them would be full again by now. */
export async function pruneIdleBuckets(db: Db, idleSeconds: number): Promise<number> {
  const result = await db
    .deleteFrom('rate_limit_buckets')
    .where('refilled_at', '<', sql<Date>`now() - make_interval(secs => ${idleSeconds})`)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
