import type { Db } from '../db/database';

/**
 * The running rotation that has not promoted its keys yet, if any: the one that holds the
 * one-at-a-time slot (a unique index admits one). A promoted one only waits out its grace.
 */
export async function unpromotedRotation(db: Db): Promise<{ id: string } | undefined> {
  return db.selectFrom('key_rotations').select('id').where('status', '=', 'running').where('promoted_at', 'is', null).executeTakeFirst();
}
