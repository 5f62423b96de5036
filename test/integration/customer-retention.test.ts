import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer, markCustomerErased } from '../../src/customers/customer-dal';
import { ensureRetentionSchedule, retentionPlan } from '../../src/customers/customer-retention';
import type { Db } from '../../src/db/database';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import { CUSTOMER_RETENTION_SCHEDULE_ID, erasureWorkflowId, type CustomerRetentionInput } from '../../workflows/customer-contracts';
import type { customerRetentionWorkflow } from '../../workflows/customers';
import { createTestWorkers, quietLog } from '../support/runtime';
import { spawnCli } from '../support/spawn';
import { ownDatabase } from '../support/own-database';

const DAY_MS = 86_400_000;
const RETENTION_DAYS = 730;

/**
 * Retention on a database of its own (the plan covers every customer in it): customers whose
 * business ended more than CUSTOMER_RETENTION_DAYS ago are erased through the erasure workflow
 * with the reason `retention`; everyone with anything still open, or who ended recently, stays.
 */
describe('customer retention', () => {
  let env: Record<string, string>;
  let config: Config;
  let owner: Db;
  let dropDatabase: () => Promise<void>;
  let workers: Awaited<ReturnType<typeof createTestWorkers>>;
  let client: Client;
  let release: () => void;
  let running: Promise<unknown>;
  /** Expected outcome per seeded customer: true when retention must erase them. */
  const expected = new Map<string, { due: boolean; why: string }>();

  const ago = (days: number) => new Date(Date.now() - days * DAY_MS);
  const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

  async function customer(why: string, due: boolean, registeredDaysAgo: number): Promise<string> {
    const customerId = id('cust');
    await insertCustomer(workers.services.db, await sealProfile(workers.services.envelope, customerId, { email: `${customerId}@example.com`, name: 'Re Tention', country: 'DE' }));
    // created_at is the database's own (never written by the application): backdated with SQL.
    await sql`update customers set created_at = ${ago(registeredDaysAgo)} where id = ${customerId}`.execute(owner);
    expected.set(customerId, { due, why });
    return customerId;
  }

  async function subscription(customerId: string, status: 'pending' | 'active' | 'past_due' | 'unpaid' | 'canceled' | 'failed', changedDaysAgo: number): Promise<string> {
    const subscriptionId = id('sub_ll');
    await owner
      .insertInto('subscriptions')
      .values({
        id: subscriptionId,
        customer_id: customerId,
        price_id: 'price_retention',
        status,
        saga_step: 'seeded',
        failure_type: status === 'failed' ? 'CardDeclined' : null,
        created_at: ago(changedDaysAgo + 30),
        updated_at: ago(changedDaysAgo),
      })
      .execute();
    return subscriptionId;
  }

  beforeAll(async () => {
    ({ env, config, owner, drop: dropDatabase } = await ownDatabase('retention', {
      TEMPORAL_TASK_QUEUE: `retention-${process.pid}-${Date.now().toString(36)}`,
      CUSTOMER_RETENTION_DAYS: String(RETENTION_DAYS),
    }));
    workers = await createTestWorkers(config, 'retention-worker');
    running = runWorkersUntil(workers.workers, new Promise<void>((resolve) => (release = resolve)));
    client = await connectClient(config, workers.services.dataConverter);

    // Due: their business ended long ago.
    await customer('never subscribed, registered 1000 days ago', true, 1000);
    await subscription(await customer('canceled 800 days ago', true, 1200), 'canceled', 800);
    await subscription(await customer('failed saga 900 days ago', true, 1000), 'failed', 900);
    const twoEnded = await customer('two subscriptions, both ended long ago', true, 2000);
    await subscription(twoEnded, 'canceled', 1500);
    await subscription(twoEnded, 'canceled', 760);
    // Enough due customers for more than ten pages of two: the run continues as new.
    for (let i = 0; i < 18; i++) await subscription(await customer(`canceled long ago #${i}`, true, 1100), 'canceled', 740 + i);

    // Kept: something is still open, or it ended too recently.
    await customer('registered recently, never subscribed', false, 10);
    await subscription(await customer('canceled 100 days ago', false, 1000), 'canceled', 100);
    const mixed = await customer('one old canceled, one active', false, 1500);
    await subscription(mixed, 'canceled', 1000);
    await subscription(mixed, 'active', 900);
    const lastEndedRecently = await customer('an old cancellation, then a recent one', false, 1500);
    await subscription(lastEndedRecently, 'canceled', 1000);
    await subscription(lastEndedRecently, 'canceled', 20);
    await subscription(await customer('unpaid: an open invoice', false, 1500), 'unpaid', 900);
    await subscription(await customer('past due: a campaign under way', false, 1500), 'past_due', 900);
    await subscription(await customer('pending', false, 1500), 'pending', 900);
    const noticeWaiting = await customer('a dunning notice still waiting', false, 1500);
    const noticeSub = await subscription(noticeWaiting, 'canceled', 900);
    await owner.insertInto('notification_outbox').values({ id: id('note'), customer_id: noticeWaiting, subscription_id: noticeSub, invoice_id: 'in_retention', template: 'payment_failed', status: 'pending' }).execute();
    const suspended = await customer('a campaign still holds a suspension', false, 1500);
    await owner.insertInto('entitlement_suspensions').values({ subscription_id: await subscription(suspended, 'canceled', 900), invoice_id: 'in_retention' }).execute();
    const entitled = await customer('an entitlement still granted', false, 1500);
    await owner.insertInto('entitlements').values({ subscription_id: await subscription(entitled, 'canceled', 900), customer_id: entitled, price_id: 'price_retention' }).execute();
    const erased = await customer('erased already', false, 1500);
    await markCustomerErased(owner, erased);
  }, 60_000);

  afterAll(async () => {
    release?.();
    await running;
    await client?.connection.close();
    await workers?.close();
    await dropDatabase?.();
  });

  const retention = (input: CustomerRetentionInput) =>
    client.workflow.execute<typeof customerRetentionWorkflow>('customerRetentionWorkflow', {
      taskQueue: config.temporal.taskQueue,
      workflowId: `${CUSTOMER_RETENTION_SCHEDULE_ID}-test-${randomBytes(4).toString('hex')}`,
      args: [input],
    });
  const due = () => [...expected].filter(([, e]) => e.due).map(([customerId]) => customerId).sort();

  it('plans exactly the customers whose business ended before the cutoff, and nobody with anything open', async () => {
    const { cutoff, candidates } = await retentionPlan(workers.services.db, new Date(), RETENTION_DAYS, 7);
    expect(Math.abs(cutoff.getTime() - ago(RETENTION_DAYS).getTime())).toBeLessThan(60_000);
    const planned = candidates.map((c) => c.customerId);
    // Named, so a wrong decision says which rule broke.
    expect(planned.map((c) => expected.get(c)?.why)).toEqual(due().map((c) => expected.get(c)!.why));
    expect(planned).toEqual(due());
    const twoEnded = candidates.find((c) => expected.get(c.customerId)!.why.startsWith('two subscriptions'))!;
    expect(Math.abs(twoEnded.lastActivityAt.getTime() - ago(760).getTime())).toBeLessThan(60_000);
  });

  it('`ledgerlock retention plan` lists the same customers, opaque ids only, and erases nothing', async () => {
    const cli = spawnCli(['retention', 'plan'], env);
    expect(await cli.exited).toBe(0);
    const out = cli.stdout();
    expect(out).toContain(`CUSTOMER_RETENTION_DAYS=${RETENTION_DAYS}`);
    const listed = [...out.matchAll(/^(cust_[0-9a-f]+)\t(eu|us)\tlast activity \S+$/gm)].map((m) => m[1]).sort();
    expect(listed).toEqual(due());
    expect(out).toContain(`${due().length} customers would be erased`);
    expect(out).not.toContain('@example.com');
    const active = await owner.selectFrom('customers').select(sql<number>`count(*)::int`.as('n')).where('status', '=', 'active').executeTakeFirstOrThrow();
    expect(active.n).toBe([...expected.values()].filter((e) => e.why !== 'erased already').length);
  });

  it('the retention workflow erases exactly the due customers through the erasure workflow, audited with the reason `retention`', async () => {
    const result = await retention({ requestedBy: 'test:retention', pageSize: 2 });
    // The erasures run on their own: wait for each one to finish.
    await Promise.all(due().map((customerId) => client.workflow.getHandle(erasureWorkflowId(customerId)).result()));
    expect(result.erasuresStarted).toBe(due().length);

    const rows = await owner.selectFrom('customers').select(['id', 'status']).where('id', 'in', [...expected.keys()]).execute();
    const erasedNow = rows.filter((r) => r.status === 'erased').map((r) => r.id).sort();
    expect(erasedNow).toEqual([...due(), ...[...expected].filter(([, e]) => e.why === 'erased already').map(([c]) => c)].sort());
    const liveKeys = await owner.selectFrom('data_keys').select('customer_id').where('customer_id', 'in', due()).where('status', '!=', 'destroyed').execute();
    expect(liveKeys).toEqual([]);

    const audit = await owner.selectFrom('audit_log').select(['subject_id', 'action', 'purpose', 'actor']).where('subject_id', 'in', [...expected.keys()]).where('action', 'in', ['customer.erased', 'customer.erasure_requested']).execute();
    for (const action of ['customer.erased', 'customer.erasure_requested']) {
      const entries = audit.filter((a) => a.action === action);
      expect(entries.map((a) => a.subject_id).sort()).toEqual(due());
      expect(new Set(entries.map((a) => a.purpose))).toEqual(new Set(['retention']));
    }
    expect(new Set(audit.filter((a) => a.action === 'customer.erased').map((a) => a.actor))).toEqual(new Set(['test:retention']));
  }, 120_000);

  it('a second run finds nobody left to erase', async () => {
    const result = await retention({ requestedBy: 'test:retention' });
    expect(result.erasuresStarted).toBe(0);
    expect((await retentionPlan(workers.services.db, new Date(), RETENTION_DAYS)).candidates).toEqual([]);
  }, 60_000);

  it('refuses a malformed input with a typed non-retryable failure', async () => {
    await expect(retention({ requestedBy: 'test:retention', pageSize: 0 })).rejects.toMatchObject({ cause: { type: 'InvalidRetentionInput', nonRetryable: true } });
    await expect(retention({ requestedBy: 'test:retention', asOf: 'yesterday' })).rejects.toMatchObject({ cause: { type: 'InvalidRetentionInput', nonRetryable: true } });
  }, 60_000);

  it('the `customer-retention` schedule runs the retention workflow daily, skipping a run while one is going', async () => {
    expect(await ensureRetentionSchedule(client, config, quietLog)).toMatch(/^(created|updated)$/);
    expect(await ensureRetentionSchedule(client, config, quietLog)).toBe('updated');
    const schedule = await client.schedule.getHandle(CUSTOMER_RETENTION_SCHEDULE_ID).describe();
    expect(schedule.spec.intervals).toMatchObject([{ every: DAY_MS }]);
    expect(schedule.policies.overlap).toBe('SKIP');
    expect(schedule.action).toMatchObject({ type: 'startWorkflow', workflowType: 'customerRetentionWorkflow', workflowId: CUSTOMER_RETENTION_SCHEDULE_ID });
  });
});
