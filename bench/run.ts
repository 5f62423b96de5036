import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { REPO_ROOT } from '../src/stack/paths';
import { ensureServers } from '../src/stack/servers';
import { dunningParkedBenchmark } from './benchmarks/dunning-parked';
import { envelopeBenchmark } from './benchmarks/envelope';
import { subscriptionSagaFullServerBenchmark, workflowRoundTripFullServerBenchmark } from './benchmarks/full-server';
import { keyRotationBenchmark } from './benchmarks/key-rotation';
import { roundTripBenchmark } from './benchmarks/roundtrip';
import { startupBenchmark } from './benchmarks/startup';
import { subscriptionSagaBenchmark } from './benchmarks/subscription-saga';
import { webhooksBenchmark } from './benchmarks/webhooks';
import { RESULTS_DIR, toMarkdown, writeResult, type BenchResult } from './lib';

/**
 * `npm run bench [name ...]`: runs the benchmarks one after another (never alongside a
 * test suite: two heavy jobs on 2 cores distort both) and writes each result as JSON and
 * a markdown table under bench/results/, plus summary.md for the run.
 */
const env = {
  toolsDir: process.env.LEDGERLOCK_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools'),
  databaseUrl: process.env.BENCH_DATABASE_URL ?? 'postgres://127.0.0.1:5432/postgres',
};

const BENCHMARKS: Record<string, () => Promise<BenchResult>> = {
  startup: () => startupBenchmark(env),
  'workflow-roundtrip': () => roundTripBenchmark(),
  'envelope-encryption': () => envelopeBenchmark(),
  'subscription-saga': () => subscriptionSagaBenchmark(),
  'workflow-roundtrip-full-server': () => workflowRoundTripFullServerBenchmark(),
  'subscription-saga-full-server': () => subscriptionSagaFullServerBenchmark(),
  webhooks: () => webhooksBenchmark(env),
  'dunning-parked': () => dunningParkedBenchmark(),
  'dunning-parked-full-server': () => dunningParkedBenchmark('full'),
  'key-rotation': () => keyRotationBenchmark(),
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !BENCHMARKS[name]);
  if (unknown.length) throw new Error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(BENCHMARKS).join(', ')}`);
  await ensureServers(env.toolsDir);
  const results: BenchResult[] = [];
  for (const name of wanted.length ? wanted : Object.keys(BENCHMARKS)) {
    process.stdout.write(`running ${name} ...\n`);
    const result = await BENCHMARKS[name]!();
    writeResult(result);
    results.push(result);
  }
  const table = toMarkdown(results);
  writeFileSync(path.join(RESULTS_DIR, 'summary.md'), `# Benchmarks (${new Date().toISOString()})\n\n${table}`);
  process.stdout.write(`\n${table}\nresults in ${path.relative(process.cwd(), RESULTS_DIR)}/\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
