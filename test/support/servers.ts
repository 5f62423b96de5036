import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { loadConfig } from '../../src/config/config';
import { createDb, dropDatabase, ensureDatabase } from '../../src/db/database';
import { migrate } from '../../src/db/migrate';
import { createKmsClient, ensureMasterKeys } from '../../src/kms/kms-client';
import { DEV_SERVER_SQLITE_PRAGMAS, startLocalServers } from '../../src/stack/local-servers';
import { REPO_ROOT } from '../../src/stack/paths';
import { freePort } from '../../src/stack/process';
import { ensureServers, serverPath } from '../../src/stack/servers';
import { SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';
import type { TestStack } from './stack';

/**
 * One set of real servers, each on a free loopback port: the Temporal dev server (through
 * @temporalio/testing, the pinned CLI binary, its SQLite file in the data folder so tests
 * can inspect what the server stored), the local KMS with its master keys, stripe-mock,
 * and a fresh, migrated PostgreSQL database. `stop` tears it all down, database included.
 * Used by the test run's global setup and by the benchmarks.
 */
export async function startTestServers(name: string): Promise<{ stack: TestStack; stop(): Promise<void> }> {
  const toolsDir = process.env.LEDGERLOCK_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools');
  await ensureServers(toolsDir);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `ledgerlock-${name}-`));
  const baseUrl = process.env.TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/postgres';
  const databaseUrl = withDatabase(baseUrl, `ledgerlock_${name}_${process.pid}_${Date.now().toString(36)}`);
  const teardown: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const step of teardown.reverse()) await step().catch((err) => console.error('teardown:', err));
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    const [kmsPort, stripePort, temporalPort, temporalHttpPort, temporalMetricsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const config = loadConfig({
      LEDGERLOCK_DATA_DIR: dataDir,
      LEDGERLOCK_TOOLS_DIR: toolsDir,
      KMS_PORT: String(kmsPort),
      STRIPE_MOCK_PORT: String(stripePort),
      // Temporal comes from @temporalio/testing below, so the stack must not start one.
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      ...(process.env.LOCAL_KMS_PATH ? { LOCAL_KMS_PATH: process.env.LOCAL_KMS_PATH } : {}),
    });

    const temporalCli = serverPath('temporal', toolsDir);
    const temporalDb = path.join(dataDir, 'temporal.sqlite');
    const [servers, temporal] = await Promise.all([
      startLocalServers(config, path.join(dataDir, 'logs')),
      TestWorkflowEnvironment.createLocal({
        server: {
          executable: { type: 'existing-path', path: temporalCli },
          ip: '127.0.0.1',
          port: temporalPort,
          ui: false,
          dbFilename: temporalDb,
          // Its HTTP API and metrics on ports picked here, never ones it picks itself.
          extraArgs: [...DEV_SERVER_SQLITE_PRAGMAS, '--http-port', String(temporalHttpPort), '--metrics-port', String(temporalMetricsPort)],
          searchAttributes: Object.values(SEARCH_ATTRIBUTES),
          log: { format: 'pretty', level: 'warn' },
        },
      }),
    ]);
    teardown.push(() => servers.stop(), () => temporal.teardown());

    await ensureDatabase(databaseUrl);
    teardown.push(() => dropDatabase(databaseUrl));
    const db = createDb(databaseUrl, { max: 1 });
    await migrate(db).finally(() => db.destroy());

    const kms = createKmsClient(config);
    await ensureMasterKeys(kms, config).finally(() => kms.destroy());

    return {
      stack: {
        databaseUrl,
        temporalAddress: config.temporal.address,
        temporalDbFile: temporalDb,
        kmsEndpoint: config.kms.endpoint!,
        stripeApiUrl: config.stripe.apiUrl!,
        dataDir,
        toolsDir,
        temporalCli,
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const UNLIMITED: Record<string, string> = Object.fromEntries(
  ['READS', 'WRITES', 'SOURCE'].flatMap((c) => [[`RATE_LIMIT_${c}_PER_SECOND`, '100000'], [`RATE_LIMIT_${c}_BURST`, '100000']]).concat(
    ['ERASURES', 'EXPORTS'].flatMap((c) => [[`RATE_LIMIT_${c}_PER_MINUTE`, '100000'], [`RATE_LIMIT_${c}_BURST`, '100000']]),
  ),
);

/** The environment that points a Ledgerlock process at `stack`'s servers. */
export function envFor(stack: TestStack, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    LEDGERLOCK_MODE: 'local',
    LEDGERLOCK_DATA_DIR: stack.dataDir,
    LEDGERLOCK_TOOLS_DIR: stack.toolsDir,
    LOG_LEVEL: 'warn',
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    KMS_ENDPOINT: stack.kmsEndpoint,
    STRIPE_API_URL: stack.stripeApiUrl,
    API_PORT: '0',
    // Many Ledgerlock processes at once: none takes 9464 from another.
    METRICS_PORT: '0',
    // Tests fire requests far faster than any client should; rate-limit.test.ts sets its own.
    ...UNLIMITED,
    ...overrides,
  };
}

function withDatabase(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
