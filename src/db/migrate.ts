import { Migrator, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
import * as apiIdempotencyKeys from './migrations/2026-11-21T00-00-api-idempotency-keys';
import * as auditLog from './migrations/2026-11-21T01-00-audit-log';
import * as customersAndDataKeys from './migrations/2026-11-21T02-00-customers-and-data-keys';
import * as subscriptions from './migrations/2026-11-22T00-00-subscriptions';
import * as stripeEvents from './migrations/2026-11-22T01-00-stripe-events';
import * as dunning from './migrations/2026-11-22T02-00-dunning';
import * as keyRotation from './migrations/2026-11-22T03-00-key-rotation';
import * as apiIdempotencyResponses from './migrations/2026-12-02T00-00-api-idempotency-responses';
import * as appLoginRole from './migrations/2026-12-02T00-00-app-login-role';
import * as rateLimitBuckets from './migrations/2026-12-03T00-00-rate-limit-buckets';
import * as customerConsents from './migrations/2026-12-03T01-00-customer-consents';
import * as auditBySubject from './migrations/2026-12-03T02-00-audit-by-subject';
import * as rotationPromotion from './migrations/2026-12-03T03-00-rotation-promotion';

/**
 * Migrations listed explicitly rather than read from a folder at run time, so they work
 * the same under tsx, compiled JavaScript and vitest. Names sort by date: append only.
 */
const MIGRATIONS: Record<string, Migration> = {
  '2026-11-21T00-00-api-idempotency-keys': apiIdempotencyKeys,
  '2026-11-21T01-00-audit-log': auditLog,
  '2026-11-21T02-00-customers-and-data-keys': customersAndDataKeys,
  '2026-11-22T00-00-subscriptions': subscriptions,
  '2026-11-22T01-00-stripe-events': stripeEvents,
  '2026-11-22T02-00-dunning': dunning,
  '2026-11-22T03-00-key-rotation': keyRotation,
  '2026-12-02T00-00-api-idempotency-responses': apiIdempotencyResponses,
  '2026-12-02T00-00-app-login-role': appLoginRole,
  '2026-12-03T00-00-rate-limit-buckets': rateLimitBuckets,
  '2026-12-03T01-00-customer-consents': customerConsents,
  '2026-12-03T02-00-audit-by-subject': auditBySubject,
  '2026-12-03T03-00-rotation-promotion': rotationPromotion,
};

export function createMigrator(db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    migrationTableName: 'ledgerlock_migrations',
    migrationLockTableName: 'ledgerlock_migrations_lock',
  });
}

export type MigrateDirection = 'latest' | 'up' | 'down';

export class MigrationError extends Error {
  constructor(readonly migration: string | undefined, cause: unknown) {
    super(`migration ${migration ?? '(unknown)'} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'MigrationError';
  }
}

/** Applies migrations and returns the names that ran; each runs in its own transaction. */
export async function migrate(db: Kysely<any>, direction: MigrateDirection = 'latest'): Promise<string[]> {
  const migrator = createMigrator(db);
  const result: MigrationResultSet =
    direction === 'latest'
      ? await migrator.migrateToLatest()
      : direction === 'up'
        ? await migrator.migrateUp()
        : await migrator.migrateDown();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new MigrationError(failed?.migrationName, result.error);
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

export const MIGRATION_NAMES = Object.keys(MIGRATIONS);
