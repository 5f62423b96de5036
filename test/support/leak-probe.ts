import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { sql } from 'kysely';
import type { Db } from '../../src/db/database';

/**
 * Everything an operator with the codec can read of a workflow's history, as one text:
 * every payload decoded through `codec` (the codec server's own), every other string and
 * byte field as UTF-8. A probe value absent from it is absent from the history.
 */
export async function decodedHistoryText(client: Client, workflowId: string, codec: PayloadCodec): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const out: string[] = [];
  const walk = async (value: unknown): Promise<void> => {
    if (typeof value === 'string') return void out.push(value);
    if (value instanceof Uint8Array) return void out.push(Buffer.from(value).toString('utf8'));
    if (Array.isArray(value)) {
      for (const item of value) await walk(item);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const record = value as Record<string, unknown>;
    if (record.data instanceof Uint8Array && record.metadata && typeof record.metadata === 'object') {
      const [decoded] = await codec.decode([record as Payload]);
      out.push(Buffer.from(decoded!.data ?? new Uint8Array()).toString('utf8'));
      for (const meta of Object.values(decoded!.metadata ?? {})) out.push(Buffer.from(meta as Uint8Array).toString('utf8'));
      return;
    }
    for (const item of Object.values(record)) await walk(item);
  };
  await walk(history);
  return out.join('\n');
}

/** Every row of every table in the database's public schema, as JSON text. */
export async function databaseText(db: Db): Promise<string> {
  const { rows: tables } = await sql<{ name: string }>`select tablename as name from pg_tables where schemaname = 'public'`.execute(db);
  const out: string[] = [];
  for (const { name } of tables) {
    const { rows } = await sql<{ row: string }>`select to_jsonb(t)::text as row from ${sql.table(name)} t`.execute(db);
    out.push(...rows.map((r) => r.row));
  }
  return out.join('\n');
}
