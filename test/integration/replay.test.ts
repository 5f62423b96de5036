import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { sagaMetricsSinks } from '../../src/worker/saga-metrics';
import { TRACED_WORKFLOW_BUNDLE_OPTIONS, tracingSinks, WORKFLOW_BUNDLE_OPTIONS } from '../../src/worker/worker';
import { historyFromJson } from '../support/histories';
import { silentLogger } from '../support/runtime';

/**
 * Replays every recorded history under test/histories/ against the current workflow code:
 * a change that would break executions already running (different commands, in another
 * order) fails here. Histories are recorded by test/support/record-histories.ts.
 */

const HISTORIES = path.resolve(__dirname, '../histories');
const files = readdirSync(HISTORIES, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.json'))
  .sort();
const load = (file: string) => historyFromJson(JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8')));

describe('replay of recorded workflow histories', () => {
  // The default bundle (tracing off) and the one a process with tracing on runs: every history must replay under both.
  let workflowBundle: WorkflowBundleWithSourceMap;
  let tracedBundle: WorkflowBundleWithSourceMap;
  beforeAll(async () => {
    workflowBundle = await bundleWorkflowCode({ ...WORKFLOW_BUNDLE_OPTIONS, logger: silentLogger });
    tracedBundle = await bundleWorkflowCode({ ...TRACED_WORKFLOW_BUNDLE_OPTIONS, logger: silentLogger });
  });

  it('has the subscription histories: the happy paths, each compensation path and the subscription’s life', () => {
    expect(files.map((f) => path.basename(f, '.json'))).toEqual(
      expect.arrayContaining([
        'create-paid',
        'create-3ds-then-paid',
        'fail-at-store-customer',
        'fail-at-create-stripe-customer',
        'fail-at-attach-payment-method',
        'fail-at-create-stripe-subscription',
        'first-payment-declined-at-once',
        'first-payment-failed-signal',
        'first-payment-forged-then-paid',
        'payment-window-expired',
        'fail-at-provision-entitlements',
        'fail-at-mark-active',
        'compensation-keeps-failing',
        'live-until-continue-as-new',
        'live-until-canceled',
        'live-canceled-immediately',
        'live-canceled-by-dunning',
        'live-with-dunning-until-canceled',
      ]),
    );
  });

  it('has the dunning histories: recovered, retried on a new payment method, hard decline, exhausted then paid, suspended then paid, stopped', () => {
    expect(files.filter((f) => f.startsWith('dunning/')).map((f) => path.basename(f, '.json'))).toEqual(
      expect.arrayContaining([
        'dunning-recovered-at-attempt-2',
        'dunning-payment-method-updated',
        'dunning-hard-decline-cancels',
        'dunning-exhausted-unpaid-then-paid',
        'dunning-suspended-at-grace-then-paid',
        'dunning-stopped-by-cancellation',
      ]),
    );
  });

  it('has the key rotation histories: completed, verification failed, promotion failed, refused, an emergency ending a grace; and those from before emergencies', () => {
    const names = (prefix: string) => files.filter((f) => path.dirname(f) === prefix).map((f) => path.basename(f, '.json')).sort();
    const before = ['rotation-completed', 'rotation-promotion-failed', 'rotation-refused-while-running', 'rotation-verification-failed'];
    expect(names('key-rotation')).toEqual([...before, 'rotation-emergency', 'rotation-grace-ended-early'].sort());
    expect(names('key-rotation/v2-before-emergency')).toEqual(before);
    expect(names('key-rotation/v1-before-tracing')).toEqual(before);
  });

  it('has histories recorded with tracing on (trace context in the start\'s and each activity\'s headers) beside those recorded before it', () => {
    const headerKeys = (file: string) => {
      const events = load(file).events!;
      const started = Object.keys(events[0]!.workflowExecutionStartedEventAttributes!.header?.fields ?? {});
      const scheduled = events.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [Object.keys(e.activityTaskScheduledEventAttributes.header?.fields ?? {})] : []));
      return { started, scheduled };
    };
    const traced = headerKeys('subscriptions/create-paid.json');
    expect(traced.started).toEqual(['_tracer-data']);
    expect(traced.scheduled.length).toBeGreaterThan(3);
    for (const keys of traced.scheduled) expect(keys).toEqual(['_tracer-data']);
    const before = headerKeys('subscriptions/v4-before-tracing/create-paid.json');
    expect([...before.started, ...before.scheduled.flat()]).toEqual([]);
  });

  it.each(['tracing off', 'tracing on'] as const)('replays every history against the current workflow code without a determinism error (%s)', async (which) => {
    const histories = files.map((file) => ({ workflowId: `replay:${file}`, history: load(file) }));
    const failures: string[] = [];
    let replayed = 0;
    const bundle = which === 'tracing on' ? tracedBundle : workflowBundle;
    for await (const result of Worker.runReplayHistories({ workflowBundle: bundle, replayName: 'histories', sinks: { ...tracingSinks(), ...sagaMetricsSinks } }, histories)) {
      replayed += 1;
      if (result.error) failures.push(`${result.workflowId}: ${result.error.name}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(replayed).toBe(files.length);
  });

  it('would catch a change: a history replayed against another workflow fails with a determinism error', async () => {
    const history = load('subscriptions/create-paid.json');
    const started = history.events![0]!.workflowExecutionStartedEventAttributes!;
    // The customer registration saga starts with a different command than the subscription saga.
    started.workflowType = { name: 'registerCustomerWorkflow' };
    await expect(Worker.runReplayHistory({ workflowBundle, replayName: 'mismatch', sinks: { ...tracingSinks(), ...sagaMetricsSinks } }, history, 'replay:mismatch')).rejects.toMatchObject({
      name: 'DeterminismViolationError',
    });
  });
});
