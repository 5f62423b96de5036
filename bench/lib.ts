import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * One benchmark's outcome. Every figure comes with a baseline measured in the same run on
 * the same machine, and the ratio between them is what to compare across machines.
 */
export interface BenchResult {
  readonly name: string;
  readonly description: string;
  readonly measured: { readonly label: string; readonly value: number; readonly unit: string };
  readonly baseline: { readonly label: string; readonly value: number; readonly unit: string };
  /** measured / baseline, in the direction `ratioMeaning` explains. */
  readonly ratio: number;
  readonly ratioMeaning: string;
  readonly target?: { readonly description: string; readonly met: boolean };
  readonly details?: Record<string, number | string>;
}

export const RESULTS_DIR = path.resolve(__dirname, 'results');

export function writeResult(result: BenchResult): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamped = { ...result, machine: machine(), measuredAt: new Date().toISOString() };
  writeFileSync(path.join(RESULTS_DIR, `${result.name}.json`), JSON.stringify(stamped, null, 2) + '\n');
  writeFileSync(path.join(RESULTS_DIR, `${result.name}.md`), toMarkdown([result]));
}

export function toMarkdown(results: readonly BenchResult[]): string {
  const rows = results.map((r) =>
    [
      r.name,
      `${fmt(r.measured.value)} ${r.measured.unit} (${r.measured.label})`,
      `${fmt(r.baseline.value)} ${r.baseline.unit} (${r.baseline.label})`,
      `${fmt(r.ratio)} — ${r.ratioMeaning}`,
      r.target ? `${r.target.met ? 'met' : 'NOT met'}: ${r.target.description}` : '',
    ].join(' | '),
  );
  return ['| benchmark | measured | baseline (same run) | ratio | target |', '|---|---|---|---|---|', ...rows.map((r) => `| ${r} |`), ''].join('\n');
}

function fmt(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

export function machine(): Record<string, string | number> {
  const os = require('node:os') as typeof import('node:os');
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs `task` `total` times with at most `concurrency` in flight; returns the elapsed seconds. */
export async function runConcurrently(total: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await task(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}
