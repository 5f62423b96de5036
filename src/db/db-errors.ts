/**
 * SQLSTATEs that mean the server is going away, restarting or full, not that the statement
 * was wrong: class 08 (connection exception), 57P01–57P03 (shutdown, crash, starting up),
 * 53300 (too many connections), and 40001/40P01 (serialization failure, deadlock), which a
 * retry of the same work resolves.
 */
const TRANSIENT_SQLSTATES = /^(08...|57P0[123]|53300|40001|40P01)$/;

/** node-postgres's own messages when a connection dies under it. */
const CONNECTION_LOST = /^(Connection terminated|Client has encountered a connection error|Client was closed and is not queryable)/;

/** No connection to PostgreSQL could be made (refused, timed out, reset while connecting). */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
  constructor(readonly reason: string) {
    super(`PostgreSQL unavailable (${reason})`);
  }
}

/**
 * Whether `err` says PostgreSQL is unavailable right now (terminated backends, a restart,
 * a failover, refused connections), as a short reason for logs and failures; undefined for
 * any other error. The same work will succeed once the server is back.
 */
export function databaseOutage(err: unknown): string | undefined {
  if (err instanceof DatabaseUnavailableError) return err.reason;
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_SQLSTATES.test(code)) return code;
  if (CONNECTION_LOST.test(err.message)) return 'connection lost';
  return undefined;
}

/** What a failed connect is called in logs: the socket error's code, never the URL or user. */
export function connectFailureReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error && /timeout/i.test(err.message) ? 'connect timeout' : 'connect failed';
}
