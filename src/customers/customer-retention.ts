import { sql } from 'kysely';
import { ScheduleOverlapPolicy, type Client, type ScheduleOptionsAction } from '@temporalio/client';
import { ensureSchedule } from '../temporal/schedules';
import type { Config } from '../config/config';
import type { Db } from '../db/database';
import type { Logger } from '../log';
import { CUSTOMER_RETENTION_SCHEDULE_ID, type CustomerRetentionInput } from '../../workflows/customer-contracts';
import type { customerRetentionWorkflow } from '../../workflows/customers';

/**
 * Retention: a customer whose business with us has ended is erased once
 * CUSTOMER_RETENTION_DAYS have passed since it ended. "Ended" means:
 *
 * - no subscription of theirs is pending, active, past_due or unpaid (an unpaid one is an
 *   open invoice; past_due is a campaign under way), and every one is canceled or failed;
 * - no entitlement of theirs is still granted, no campaign holds a suspension, and no
 *   dunning notice to them is still waiting to go out;
 * - the last change to any of their subscriptions (`updated_at`: cancellation, failure,
 *   the last dunning step) is older than the cutoff; a customer who never subscribed is
 *   judged by the date they were registered.
 *
 * The same query serves the dry run (`ledgerlock retention plan`) and the schedule's
 * workflow, so the plan lists exactly who the next run would erase.
 */

export interface RetentionCandidate {
  readonly customerId: string;
  readonly region: string;
  /** When their business with us ended: the last subscription change, or registration. */
  readonly lastActivityAt: Date;
}

/** The cutoff for `asOf`: customers whose business ended before it are due for erasure. */
export function retentionCutoff(asOf: Date, retentionDays: number): Date {
  return new Date(asOf.getTime() - retentionDays * 86_400_000);
}

/** One page of customers due for erasure at `cutoff`, in id order after `afterId`. */
export async function retentionCandidates(db: Db, page: { readonly cutoff: Date; readonly afterId?: string; readonly limit: number }): Promise<RetentionCandidate[]> {
  let query = db
    .selectFrom('customers as c')
    .leftJoin('subscriptions as s', 's.customer_id', 'c.id')
    .select((eb) => ['c.id', 'c.region', eb.fn.coalesce(eb.fn.max('s.updated_at'), 'c.created_at').as('last_activity_at')])
    .where('c.status', '=', 'active')
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('entitlements as e').select(sql`1`.as('one')).whereRef('e.customer_id', '=', 'c.id').where('e.revoked_at', 'is', null))),
    )
    .where(({ not, exists, selectFrom }) =>
      not(exists(selectFrom('notification_outbox as n').select(sql`1`.as('one')).whereRef('n.customer_id', '=', 'c.id').where('n.status', '=', 'pending'))),
    )
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('entitlement_suspensions as es')
            .innerJoin('subscriptions as s2', 's2.id', 'es.subscription_id')
            .select(sql`1`.as('one'))
            .whereRef('s2.customer_id', '=', 'c.id'),
        ),
      ),
    )
    .groupBy('c.id')
    // Every subscription ended (none at all counts as ended), and the last change before the cutoff.
    .having(sql<boolean>`bool_and(coalesce(s.status in ('canceled', 'failed'), true))`)
    .having(sql<boolean>`coalesce(max(s.updated_at), c.created_at) < ${page.cutoff}`)
    .orderBy('c.id')
    .limit(page.limit);
  if (page.afterId !== undefined) query = query.where('c.id', '>', page.afterId);
  const rows = await query.execute();
  return rows.map((row) => ({ customerId: row.id, region: row.region, lastActivityAt: new Date(row.last_activity_at as Date | string) }));
}

/** Every customer due for erasure at `asOf`: the dry run. */
export async function retentionPlan(db: Db, asOf: Date, retentionDays: number, pageSize = 500): Promise<{ cutoff: Date; candidates: RetentionCandidate[] }> {
  const cutoff = retentionCutoff(asOf, retentionDays);
  const candidates: RetentionCandidate[] = [];
  for (let afterId: string | undefined; ; ) {
    const page = await retentionCandidates(db, { cutoff, limit: pageSize, ...(afterId === undefined ? {} : { afterId }) });
    candidates.push(...page);
    if (page.length < pageSize) return { cutoff, candidates };
    afterId = page.at(-1)!.customerId;
  }
}

function action(config: Pick<Config, 'temporal'>): ScheduleOptionsAction {
  return {
    type: 'startWorkflow',
    workflowType: 'customerRetentionWorkflow' satisfies (typeof customerRetentionWorkflow)['name'],
    workflowId: CUSTOMER_RETENTION_SCHEDULE_ID,
    taskQueue: config.temporal.taskQueue,
    args: [{ requestedBy: `schedule:${CUSTOMER_RETENTION_SCHEDULE_ID}` } satisfies CustomerRetentionInput],
  };
}

/**
 * Creates the `customer-retention` schedule (daily, a run skipped while the last one is still
 * going), or brings an existing one in line. Safe to run on every start, from any number of
 * processes. The retention period itself is read by the workers, not stored in the schedule.
 */
export async function ensureRetentionSchedule(client: Pick<Client, 'schedule'>, config: Pick<Config, 'temporal' | 'customerRetentionDays'>, log: Pick<Logger, 'info' | 'warn'>): Promise<'created' | 'updated'> {
  const outcome = await ensureSchedule(client, log, CUSTOMER_RETENTION_SCHEDULE_ID, {
    spec: { intervals: [{ every: '1d' }] },
    action: action(config),
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
  });
  if (outcome === 'created') log.info({ retentionDays: config.customerRetentionDays }, 'customer retention schedule created');
  return outcome;
}
