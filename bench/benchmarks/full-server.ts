import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config/config';
import { startTemporalServer, type TemporalServer } from '../../src/stack/temporal-server';
import { runWorkersUntil } from '../../src/worker/worker';
import { envFor, startTestServers } from '../../test/support/servers';
import type { TestStack } from '../../test/support/stack';
import type { BenchResult } from '../lib';
import { measureRoundTrips } from './roundtrip';
import { startSagaRig } from './subscription-saga';

/**
 * The production topology's Temporal against the dev server, side by side in one run: the
 * same measurement against the Temporal dev server (SQLite) and against the full server on
 * PostgreSQL (src/stack/temporal-server.ts), alternated round by round, best round of each.
 * The ratio is the full server's throughput as a share of the dev server's.
 */

const ROUNDS = 2;
const SAGAS = 40;
const ROUNDTRIPS = 300;
const SAGA_CONCURRENCY_NOTE = 'concurrency 8 (the subscription-saga benchmark\'s)';
/** As in subscription-saga: Stripe's production cap is Temporal's own limiter, lifted here. */
const STRIPE_CAP = '1000';

async function bothServers<T>(name: string, run: (stack: TestStack, full: TemporalServer) => Promise<T>): Promise<T> {
  const { stack, stop } = await startTestServers(name);
  const dir = mkdtempSync(path.join(os.tmpdir(), `ledgerlock-${name}-`));
  let full: TemporalServer | undefined;
  try {
    full = await startTemporalServer({
      databaseUrl: stack.databaseUrl,
      suffix: `${name.replace(/-/g, '_')}_${process.pid}_${Date.now().toString(36)}`,
      namespace: 'default',
      toolsDir: stack.toolsDir,
      dir,
    });
    return await run(stack, full);
  } finally {
    await full?.destroy().catch((err) => console.error('teardown:', err));
    rmSync(dir, { recursive: true, force: true });
    await stop();
  }
}

function configs(stack: TestStack, full: TemporalServer, overrides: Record<string, string>): { dev: (tag: string) => Config; full: (tag: string) => Config } {
  return {
    dev: (tag) => loadConfig(envFor(stack, { ...overrides, TEMPORAL_TASK_QUEUE: `bench-dev-${tag}` })),
    full: (tag) => loadConfig(envFor(stack, { ...overrides, TEMPORAL_TASK_QUEUE: `bench-full-${tag}`, TEMPORAL_ADDRESS: full.address })),
  };
}

export async function workflowRoundTripFullServerBenchmark(): Promise<BenchResult> {
  return bothServers('bench-roundtrip-full', async (stack, full) => {
    const config = configs(stack, full, { LOG_LEVEL: 'error' });
    const best = { dev: { workflowsPerSecond: 0, rpcsPerSecond: 0 }, full: { workflowsPerSecond: 0, rpcsPerSecond: 0 } };
    for (let round = 0; round < ROUNDS; round++) {
      for (const which of ['dev', 'full'] as const) {
        const measured = await measureRoundTrips(config[which](`${round}-${randomUUID().slice(0, 8)}`), ROUNDTRIPS);
        process.stdout.write(`  round ${round + 1} ${which}: ${measured.workflowsPerSecond.toFixed(1)} workflows/s, ${measured.rpcsPerSecond.toFixed(0)} RPCs/s\n`);
        if (measured.workflowsPerSecond > best[which].workflowsPerSecond) best[which] = measured;
      }
    }
    const ratio = best.full.workflowsPerSecond / best.dev.workflowsPerSecond;
    return {
      name: 'workflow-roundtrip-full-server',
      description:
        `${ROUNDTRIPS} canary workflows (one activity each, payloads encrypted), 20 in flight, worker in-process, against the full ` +
        `Temporal server v1.29.1 on PostgreSQL (its own databases, 4 history shards) and, in the same run, the Temporal dev server ` +
        `(SQLite, WAL); ${ROUNDS} alternated rounds, best of each.`,
      measured: { label: 'workflow round trips, full server on PostgreSQL', value: best.full.workflowsPerSecond, unit: '/s' },
      baseline: { label: 'workflow round trips, dev server (same run)', value: best.dev.workflowsPerSecond, unit: '/s' },
      ratio,
      ratioMeaning: 'full server throughput per dev server throughput (higher is better)',
      details: {
        fullServerDescribeNamespacePerSecond: Math.round(best.full.rpcsPerSecond),
        devServerDescribeNamespacePerSecond: Math.round(best.dev.rpcsPerSecond),
        rpcRatio: round3(best.full.rpcsPerSecond / best.dev.rpcsPerSecond),
      },
    };
  });
}

export async function subscriptionSagaFullServerBenchmark(): Promise<BenchResult> {
  return bothServers('bench-saga-full', async (stack, full) => {
    const config = configs(stack, full, { LOG_LEVEL: 'error', STRIPE_MAX_ACTIVITIES_PER_SECOND: STRIPE_CAP });
    const tag = randomUUID().slice(0, 8);
    const rigs = { dev: await startSagaRig(config.dev(tag), `dev-${tag}`), full: await startSagaRig(config.full(tag), `full-${tag}`) };
    try {
      return await runWorkersUntil([...rigs.dev.workers, ...rigs.full.workers], async () => {
        for (const which of ['dev', 'full'] as const) await rigs[which].checkActive(await rigs[which].runSagas(8));
        const best = { dev: Infinity, full: Infinity };
        const p50 = { dev: 0, full: 0 };
        for (let round = 0; round < ROUNDS; round++) {
          for (const which of ['dev', 'full'] as const) {
            const result = await rigs[which].runSagas(SAGAS);
            await rigs[which].checkActive(result);
            const median = [...result.latenciesMs].sort((a, b) => a - b)[Math.floor(result.latenciesMs.length / 2)]!;
            process.stdout.write(`  round ${round + 1} ${which}: ${(SAGAS / result.seconds).toFixed(1)} sagas/s (p50 ${median.toFixed(0)} ms)\n`);
            if (result.seconds < best[which]) {
              best[which] = result.seconds;
              p50[which] = median;
            }
          }
        }
        const fullPerSecond = SAGAS / best.full;
        const devPerSecond = SAGAS / best.dev;
        return {
          name: 'subscription-saga-full-server',
          description:
            `${SAGAS} subscription sagas, ${SAGA_CONCURRENCY_NOTE}, POST /v1/subscriptions (real API and workers in-process) → active, ` +
            `against stripe-mock, on the full Temporal server v1.29.1 on PostgreSQL and, in the same run with the same API, workers ` +
            `and database, on the Temporal dev server (SQLite, WAL); Stripe queue cap raised to ${STRIPE_CAP}/s. ${ROUNDS} alternated ` +
            `rounds after 8 warm-up sagas on each, best of each.`,
          measured: { label: 'sagas POST → active, full server on PostgreSQL', value: fullPerSecond, unit: '/s' },
          baseline: { label: 'sagas POST → active, dev server (same run)', value: devPerSecond, unit: '/s' },
          ratio: fullPerSecond / devPerSecond,
          ratioMeaning: 'full server throughput per dev server throughput (higher is better)',
          details: { sagas: SAGAS, fullServerP50Ms: Math.round(p50.full), devServerP50Ms: Math.round(p50.dev) },
        };
      });
    } finally {
      await rigs.full.close();
      await rigs.dev.close();
    }
  });
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
