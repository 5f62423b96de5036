import pg from 'pg';
import { connectionOptions } from '../db/database';
import { errorMessage, type Logger } from '../log';

/** The channel `DataKeys.destroyForCustomer` notifies on, in the destroying transaction. */
export const DATA_KEY_DESTROYED_CHANNEL = 'ledgerlock_data_key_destroyed';

/**
 * Makes crypto-shredding immediate in every process: each one listens for destroyed data
 * key ids and evicts them from its cache at once, instead of when the cache entry ages out.
 * While the listening connection is down, nothing guarantees we would hear of a
 * destruction, so the whole cache is wiped and the listener reconnects.
 */
export function listenForDestroyedKeys(
  databaseUrl: string,
  handlers: { evict(keyId: string): void; evictAll(): void },
  log: Pick<Logger, 'warn'>,
): { close(): Promise<void> } {
  let client: pg.Client | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const connect = async (attempt: number) => {
    if (closed) return;
    const next = new pg.Client(connectionOptions(databaseUrl));
    const lost = (reason: string) => {
      if (closed || client !== next) return;
      client = undefined;
      handlers.evictAll();
      log.warn({ reason }, 'data key destruction listener lost; cache wiped, reconnecting');
      next.end().catch(() => undefined);
      retryTimer = setTimeout(() => void connect(attempt + 1), Math.min(30_000, 250 * 2 ** Math.min(attempt, 7)));
    };
    client = next;
    next.on('notification', (message) => {
      if (message.channel === DATA_KEY_DESTROYED_CHANNEL && message.payload) handlers.evict(message.payload);
    });
    next.on('error', (err) => lost(errorMessage(err)));
    next.on('end', () => lost('connection ended'));
    try {
      await next.connect();
      await next.query(`LISTEN ${DATA_KEY_DESTROYED_CHANNEL}`);
      // Whatever was destroyed while we were not listening is unknown: start from an empty cache.
      if (attempt > 0) handlers.evictAll();
    } catch (err) {
      lost(errorMessage(err));
    }
  };
  void connect(0);

  return {
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await client?.end().catch(() => undefined);
    },
  };
}
