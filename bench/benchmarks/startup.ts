import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/config';
import { dropDatabase } from '../../src/db/database';
import { freeLocalPorts, startLocalServers } from '../../src/stack/local-servers';
import { spawnCli } from '../../test/support/spawn';
import { median, type BenchResult } from '../lib';

const RUNS = 3;
const TARGET_SECONDS = 15;

/**
 * Time from `ledgerlock start` (what `npm start` runs) to its ready table, servers already
 * built, against the time the Temporal dev server alone takes to answer: the part of the
 * start-up no code of ours can speed up.
 */
export async function startupBenchmark(env: { toolsDir: string; databaseUrl: string }): Promise<BenchResult> {
  const full: number[] = [];
  const temporalAlone: number[] = [];
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-bench-start-'));
  const url = new URL(env.databaseUrl);
  url.pathname = `/ledgerlock_bench_start_${process.pid}`;
  try {
    for (let run = 0; run < RUNS; run++) {
      const ports = await freeLocalPorts();
      const started = performance.now();
      const cli = spawnCli(['start'], {
        LEDGERLOCK_DATA_DIR: path.join(dataDir, 'stack'),
        LEDGERLOCK_TOOLS_DIR: env.toolsDir,
        DATABASE_URL: url.toString(),
        ...ports,
      });
      await cli.waitFor('Ledgerlock is ready', 120_000);
      full.push((performance.now() - started) / 1000);
      cli.child.kill('SIGTERM');
      await cli.exited;

      // Baseline: the dev server alone, same flags, same kind of data folder.
      const config = loadConfig({
        LEDGERLOCK_DATA_DIR: path.join(dataDir, 'temporal-only'),
        LEDGERLOCK_TOOLS_DIR: env.toolsDir,
        ...(await freeLocalPorts()),
        KMS_ENDPOINT: 'http://127.0.0.1:1',
        STRIPE_API_URL: 'http://127.0.0.1:1',
      });
      const t0 = performance.now();
      const servers = await startLocalServers(config, path.join(dataDir, 'temporal-only', 'logs'));
      temporalAlone.push((performance.now() - t0) / 1000);
      await servers.stop();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    await dropDatabase(url.toString());
  }
  const measured = median(full);
  const baseline = median(temporalAlone);
  return {
    name: 'startup',
    description: `npm start to ready, median of ${RUNS} runs (servers already built)`,
    measured: { label: 'ledgerlock start → ready table', value: measured, unit: 's' },
    baseline: { label: 'Temporal dev server alone → answering', value: baseline, unit: 's' },
    ratio: measured / baseline,
    ratioMeaning: 'times the dev server alone (lower is better)',
    target: { description: `under ${TARGET_SECONDS} s`, met: measured < TARGET_SECONDS },
    details: { runsSeconds: full.map((s) => s.toFixed(2)).join(', '), temporalAloneSeconds: temporalAlone.map((s) => s.toFixed(2)).join(', ') },
  };
}
