import { Kysely, PostgresDialect, type ColumnType, type Generated, type Insertable, type Selectable } from 'kysely';
import os from 'node:os';
import pg from 'pg';

/**
 * The typed shape of the application's tables. Migrations (src/db/migrations) are the
 * source of truth; this interface mirrors their latest state.
 */
export interface Database {
  api_idempotency_keys: ApiIdempotencyKeyTable;
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
}

export type ApiIdempotencyKey = Selectable<ApiIdempotencyKeyTable>;
export type NewApiIdempotencyKey = Insertable<ApiIdempotencyKeyTable>;

export type Db = Kysely<Database>;

export function createDb(databaseUrl: string, options: { max?: number } = {}): Db {
  return new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: new pg.Pool({ ...connectionOptions(databaseUrl), max: options.max ?? 10 }),
    }),
  });
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
