import { Kysely, PostgresDialect, type ColumnType, type Generated, type GeneratedAlways, type Insertable, type PostgresPool, type Selectable } from 'kysely';
import os from 'node:os';
import pg from 'pg';
import type { Logger } from '../log';
import type { SubscriptionStatus } from '../subscriptions/subscription-types';
import { connectFailureReason, DatabaseUnavailableError, databaseOutage } from './db-errors';

/**
 * The typed shape of the application's tables. Migrations (src/db/migrations) are the
 * source of truth; this interface mirrors their latest state.
 */
export interface Database {
  api_idempotency_keys: ApiIdempotencyKeyTable;
  data_keys: DataKeyTable;
  customers: CustomerTable;
  audit_log: AuditLogTable;
  subscriptions: SubscriptionTable;
  entitlements: EntitlementTable;
  stripe_events: StripeEventTable;
  notification_outbox: NotificationOutboxTable;
  entitlement_suspensions: EntitlementSuspensionTable;
  key_rotations: KeyRotationTable;
  key_versions: KeyVersionTable;
  customer_consents: CustomerConsentTable;
  rate_limit_buckets: RateLimitBucketTable;
}

/**
 * One row per `Idempotency-Key` an API caller sent: the hash of the request it came with
 * and the workflow that request started, so a retry gets the same answer and a reused key
 * with another body is refused.
 */
export interface ApiIdempotencyKeyTable {
  caller: string;
  idempotency_key: string;
  request_hash: string;
  workflow_id: string;
  created_at: ColumnType<Date, Date | undefined, never>;
  id: Generated<string>;
  /** The answer given, for routes that replay it (refunds); JSON text in, an object out. */
  response: ColumnType<unknown, string | null | undefined, string | null>;
}

export type ApiIdempotencyKey = Selectable<ApiIdempotencyKeyTable>;

/** A customer's data key, stored only wrapped by the KMS master key of its region. */
export interface DataKeyTable {
  id: string;
  customer_id: string;
  region: string;
  kms_key_id: string;
  /** NULL once destroyed (crypto-shredding). */
  wrapped_key: Buffer | null;
  status: 'active' | 'destroyed';
  created_at: ColumnType<Date, Date | undefined, never>;
  destroyed_at: Date | null;
  /** The rotation whose wrap `wrapped_key` is (null: the wrap made when the key was created). */
  rotation_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** A running rotation's wrap under the new master key, until promotion. */
  pending_wrapped_key: ColumnType<Buffer | null, Buffer | null | undefined, Buffer | null>;
  pending_kms_key_id: ColumnType<string | null, string | null | undefined, string | null>;
  pending_rotation_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** The wrap a promotion replaced, until the old master key is retired (so the rotation can be undone). */
  previous_wrapped_key: ColumnType<Buffer | null, Buffer | null | undefined, Buffer | null>;
  previous_kms_key_id: ColumnType<string | null, string | null | undefined, string | null>;
}

/** One consent given or withdrawn; never updated nor deleted (the app role may only insert). */
export interface CustomerConsentTable {
  id: string;
  customer_id: string;
  purpose: string;
  granted: boolean;
  /** Where it was collected: a code such as `web:signup-form:v3`, never free text. */
  source: string;
  /** The audit identity of the caller who recorded it. */
  recorded_by: string;
  recorded_at: ColumnType<Date, Date | undefined, never>;
  /** Order of recording, the newest record of a purpose being the one in force. */
  seq: ColumnType<string, never, never>;
}

export type CustomerConsentRow = Selectable<CustomerConsentTable>;

/** Personal data as Ledgerlock v1 ciphertext only; country stays plain to pick the region. */
export interface CustomerTable {
  id: string;
  region: string;
  country: string;
  data_key_id: string;
  email: Buffer;
  name: Buffer;
  address: Buffer | null;
  phone: Buffer | null;
  tax_id: Buffer | null;
  stripe_customer_id: string | null;
  status: ColumnType<'active' | 'erased', 'active' | 'erased' | undefined, 'active' | 'erased'>;
  created_at: ColumnType<Date, Date | undefined, never>;
  erased_at: Date | null;
}

export type DataKeyRow = Selectable<DataKeyTable>;
export type CustomerRow = Selectable<CustomerTable>;
export type NewApiIdempotencyKey = Insertable<ApiIdempotencyKeyTable>;

/** A column written once and never updated: kysely refuses an UPDATE of it at compile time. */
type WriteOnce<T> = ColumnType<T, T, never>;

/**
 * The append-only audit trail (src/audit): each row's `hash` covers its content and the
 * previous row's hash. The application role may only SELECT and INSERT.
 */
export interface AuditLogTable {
  /** bigint: node-postgres returns it as a string. */
  seq: GeneratedAlways<string>;
  idempotency_key: WriteOnce<string>;
  /** Written as an ISO string with millisecond precision, so it reads back to the same instant. */
  occurred_at: ColumnType<Date, string, never>;
  actor: WriteOnce<string>;
  action: WriteOnce<string>;
  subject_type: WriteOnce<string>;
  subject_id: WriteOnce<string>;
  purpose: WriteOnce<string | null>;
  /** Written as JSON text. */
  details: ColumnType<Record<string, string | number | boolean | null>, string, never>;
  prev_hash: WriteOnce<string>;
  hash: WriteOnce<string>;
}

export type AuditLogRow = Selectable<AuditLogTable>;

/**
 * A subscription as its workflows leave it (src/subscriptions), so the API can answer after
 * a workflow ended. Opaque ids only: `failure_reason` is written without personal data.
 */
export interface SubscriptionTable {
  /** `sub_ll_…`: ours, never Stripe's. */
  id: string;
  customer_id: string;
  price_id: string;
  stripe_subscription_id: string | null;
  status: SubscriptionStatus;
  saga_step: string;
  failure_type: string | null;
  failure_reason: string | null;
  cancel_at_period_end: Generated<boolean>;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

/** What a subscription grants; at most one active (unrevoked) row per subscription. */
export interface EntitlementTable {
  id: Generated<string>;
  subscription_id: string;
  customer_id: string;
  price_id: string;
  granted_at: ColumnType<Date, Date | undefined, never>;
  revoked_at: Date | null;
}

export type SubscriptionRow = Selectable<SubscriptionTable>;
export type EntitlementRow = Selectable<EntitlementTable>;

export type StripeEventStatus = 'pending' | 'delivered' | 'ignored' | 'undeliverable';

/**
 * Each verified Stripe event once (src/webhooks), and the outbox of the signal it became:
 * `pending` until the relay delivered it. No event body, no personal data.
 */
export interface StripeEventTable {
  event_id: string;
  type: string;
  livemode: boolean;
  event_created: Date;
  received_at: ColumnType<Date, Date | undefined, never>;
  status: StripeEventStatus;
  subscription_id: string | null;
  workflow_id: string | null;
  signal_name: string | null;
  /** Written as JSON text; node-postgres reads jsonb back as an object. */
  signal_args: ColumnType<Record<string, unknown> | null, string | null, never>;
  ignore_reason: string | null;
  attempts: Generated<number>;
  next_attempt_at: ColumnType<Date, Date | undefined, Date>;
  last_error: string | null;
  delivered_at: Date | null;
}

export type StripeEventRow = Selectable<StripeEventTable>;

/** A notice a dunning campaign sends; the recipient only as ciphertext bound to this row. */
export interface NotificationOutboxTable {
  id: string;
  customer_id: string;
  subscription_id: string;
  invoice_id: string;
  template: string;
  recipient: Buffer | null;
  status: 'pending' | 'sent' | 'skipped';
  attempts: Generated<number>;
  created_at: ColumnType<Date, Date | undefined, never>;
  sent_at: Date | null;
}

/** One campaign's suspension of a subscription's entitlements. */
export interface EntitlementSuspensionTable {
  subscription_id: string;
  invoice_id: string;
  suspended_at: ColumnType<Date, Date | undefined, never>;
}

/** One rotation run; at most one is running. */
export interface KeyRotationTable {
  id: string;
  status: 'running' | 'completed' | 'failed';
  stage: string;
  requested_by: string;
  total_keys: Generated<number>;
  rewrapped_keys: Generated<number>;
  verified_keys: Generated<number>;
  failure: string | null;
  started_at: ColumnType<Date, Date | undefined, never>;
  finished_at: Date | null;
  /** When its new keys were promoted: from then on it only waits out its grace period, and the next rotation may start. */
  promoted_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export type KeyVersionStatus = 'creating' | 'pending' | 'active' | 'decrypt_only' | 'retired' | 'failed';

/** A master key Ledgerlock has used behind an alias; at most one active per alias. */
export interface KeyVersionTable {
  id: Generated<string>;
  alias: string;
  purpose: 'region' | 'codec';
  region: string | null;
  kms_key_id: string | null;
  rotation_id: string | null;
  status: KeyVersionStatus;
  created_at: ColumnType<Date, Date | undefined, never>;
  promoted_at: Date | null;
  retired_at: Date | null;
}

/** One token bucket of the API's rate limits; `allowed` says whether its last request took a token. */
export interface RateLimitBucketTable {
  key: string;
  tokens: number;
  refilled_at: Date;
  allowed: boolean;
}

export type Db = Kysely<Database>;

export interface DbOptions {
  /** Pool size (default 10). */
  readonly max?: number;
  /**
   * A role to `SET ROLE` to on every new connection, so the session has that role's
   * privileges only. The application passes its restricted role; migrations pass none,
   * since they run as the owner. A session user that is a superuser could `RESET ROLE`:
   * this guards against the application's own mistakes, not a compromised process.
   */
  readonly role?: string | undefined;
  /** Told when a pooled connection dies (PostgreSQL restarted, backend terminated). */
  readonly log?: Pick<Logger, 'warn'>;
}

export function createDb(databaseUrl: string, options: DbOptions = {}): Db {
  const pool = new pg.Pool({ ...connectionOptions(databaseUrl), max: options.max ?? 10, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An idle client whose server went away emits 'error' on the pool; unheard, that event ends
  // the process. The pool has already discarded the client: the next query connects afresh.
  const lost = (state: string) => (err: Error) => options.log?.warn({ state, reason: databaseOutage(err) ?? connectFailureReason(err) }, 'PostgreSQL connection lost');
  pool.on('error', lost('idle'));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool: resilientPool(pool, options.role, lost('checked out')) }) });
}

/** How long a query waits for a connection before PostgreSQL counts as unavailable. */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * The pool kysely uses. A connection that cannot be made fails as
 * {@link DatabaseUnavailableError}, so callers can tell an outage from a refusal. A
 * checked-out connection has no 'error' listener of the pool's: one that dies between two
 * statements (inside a transaction, say) would emit an unheard 'error' and end the process.
 * Each gets `onLost` for as long as it lives; the statement in hand fails, the transaction
 * rolls back with the connection, and the pool discards it on release.
 *
 * With `role`, every new connection runs `SET ROLE` before its first use. Not kysely's
 * `onCreateConnection` hook: when that throws (role missing, no membership), kysely never
 * releases the client, so the pool drains and `destroy()` hangs. Here a failed connection
 * is discarded and the query fails with PostgreSQL's error: never run as the session user.
 */
function resilientPool(pool: pg.Pool, role: string | undefined, onLost: (err: Error) => void): PostgresPool {
  const withRoleSet = new WeakSet<pg.PoolClient>();
  const guarded = new WeakSet<pg.PoolClient>();
  const setRole = role ? `SET ROLE ${quoteIdent(role)}` : undefined;
  return {
    async connect() {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        // PostgreSQL's own refusals (no such database, authentication) carry a SQLSTATE and stay as they are.
        if (err instanceof pg.DatabaseError && databaseOutage(err) === undefined) throw err;
        throw new DatabaseUnavailableError(databaseOutage(err) ?? connectFailureReason(err));
      }
      if (!guarded.has(client)) {
        client.on('error', onLost);
        guarded.add(client);
      }
      if (!setRole || withRoleSet.has(client)) return client;
      try {
        await client.query(setRole);
      } catch (err) {
        client.release(err instanceof Error ? err : true);
        throw err;
      }
      withRoleSet.add(client);
      return client;
    },
    end: () => pool.end(),
  };
}

/**
 * Creates the database named in `databaseUrl` when it does not exist yet, connecting to
 * the server's `postgres` database to do so.
 */
export async function ensureDatabase(databaseUrl: string): Promise<{ created: boolean }> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) throw new Error('DATABASE_URL names no database');
  url.pathname = '/postgres';
  const client = new pg.Client(connectionOptions(url.toString()));
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount) return { created: false };
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
    } catch (err) {
      // Two processes starting at once: the other one won.
      if ((err as { code?: string }).code === '42P04') return { created: false };
      throw err;
    }
    return { created: true };
  } finally {
    await client.end();
  }
}

/** Drops a database, ending its open sessions first. Used by tests and `ledgerlock db drop`-like tooling. */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  url.pathname = '/postgres';
  const client = new pg.Client(connectionOptions(url.toString()));
  await client.connect();
  try {
    // Let pools that are closing finish first: FORCE would cut their sessions mid-goodbye, which they report as errors.
    for (let i = 0; i < 50; i++) {
      const open = await client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (open.rows[0].n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/**
 * Connection options for a URL. Without a user name in the URL, the operating-system user
 * is used, as libpq and psql do (node-postgres would read $USER, which services often lack).
 */
export function connectionOptions(databaseUrl: string): pg.ClientConfig {
  const url = new URL(databaseUrl);
  // node-postgres lets the parsed URL override a separate `user` option, so set it there.
  if (!url.username) url.username = encodeURIComponent(os.userInfo().username);
  return { connectionString: url.toString() };
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
