import path from 'node:path';
import type { DataConverter } from '@temporalio/common';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
} from '@temporalio/interceptors-opentelemetry/lib/worker';
import type { OpenTelemetrySinks } from '@temporalio/interceptors-opentelemetry/lib/workflow/definitions';
import {
  bundleWorkflowCode,
  Worker,
  type ActivityInterceptorsFactory,
  type InjectedSinks,
  type NativeConnection,
  type WorkflowBundleOption,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { createActivities, createStripeActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../config/config';
import { tracing } from '../tracing/tracing';
import { FAILURE_CONVERTER_PATH, PAYLOAD_CONVERTER_PATH } from '../temporal/data-converter';
import { STRIPE_QUEUE_SUFFIX } from '../../workflows/activity-options';
import { sagaMetricsSinks, sagaStepTimer } from './saga-metrics';

export const WORKFLOWS_PATH = path.resolve(__dirname, '../../workflows/index.ts');
/** Refuses, inside every workflow, what our payload codec did not encrypt. */
export const WORKFLOW_INTERCEPTORS_PATH = path.resolve(__dirname, '../../workflows/payload-authenticity.ts');
/** Tells the worker's metrics when a saga starts and how it ends (sinks: no commands, nothing in the history). */
export const SAGA_METRICS_INTERCEPTORS_PATH = path.resolve(__dirname, '../../workflows/saga-metrics.ts');
/**
 * The OpenTelemetry v1 workflow interceptors (`@temporalio/interceptors-opentelemetry` 1.24):
 * a span for the run, each signal, update and query, each activity and child workflow it
 * starts, their context passed on in headers (never commands), the spans leaving the sandbox
 * through the `exporter` sink. Bundled only when tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT):
 * each cached workflow then carries its own tracer, about 3 MiB of worker memory, and parking
 * campaigns runs at half the rate (bench dunning-parked: 1,000 cached workflows, 3.4 GiB
 * against 0.8 GiB without). Headers are not commands: histories recorded with or without it
 * replay under either bundle.
 */
export const TRACING_WORKFLOW_INTERCEPTORS_PATH = require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');

export interface WorkflowBundleOptions {
  readonly workflowsPath: string;
  readonly workflowInterceptorModules: string[];
  readonly payloadConverterPath: string;
  readonly failureConverterPath: string;
}

/**
 * What a workflow bundle is made of: the workflows, the payload-authenticity and saga-metrics
 * interceptors (and with `tracing`, the tracing ones) and the converters of the data
 * converter. A prebuilt bundle ignores the worker's own converter paths and interceptor
 * modules, so they must be bundled in.
 */
export function workflowBundleOptions(config: Pick<Config, 'tracing'>): WorkflowBundleOptions {
  return {
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: [...(config.tracing ? [TRACING_WORKFLOW_INTERCEPTORS_PATH] : []), WORKFLOW_INTERCEPTORS_PATH, SAGA_METRICS_INTERCEPTORS_PATH],
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    failureConverterPath: FAILURE_CONVERTER_PATH,
  };
}

/** The bundle of a process with tracing off, the default. */
export const WORKFLOW_BUNDLE_OPTIONS: WorkflowBundleOptions = workflowBundleOptions({});

/** The bundle of a process with tracing on. */
export const TRACED_WORKFLOW_BUNDLE_OPTIONS: WorkflowBundleOptions = workflowBundleOptions({ tracing: { otlpEndpoint: 'http://127.0.0.1' } });

/**
 * Bundles the workflow code once. Started early by `npm start` so webpack runs while the
 * servers boot, then handed to {@link createWorkers}.
 */
export function bundleWorkflows(config: Pick<Config, 'tracing'>): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ ...workflowBundleOptions(config), logger: quietBundlerLogger });
}

/** The workflow bundler's logger: warnings and errors only, to stderr. */
export const quietBundlerLogger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => process.stderr.write(`workflow bundler: ${message}\n`),
  error: (message: string) => process.stderr.write(`workflow bundler: ${message}\n`),
  log: () => undefined,
};

export interface WorkerOptions {
  readonly config: Pick<Config, 'temporal' | 'stripe' | 'tracing'>;
  readonly connection: NativeConnection;
  readonly deps: ActivityDeps;
  /** Required: workflow inputs, results and failures travel encrypted. */
  readonly dataConverter: DataConverter;
  /** A bundle made beforehand (in memory, or a file `npm start` wrote), instead of bundling here. */
  readonly workflowBundle?: WorkflowBundleOption;
}

export function stripeTaskQueue(config: Pick<Config, 'temporal'>): string {
  return `${config.temporal.taskQueue}${STRIPE_QUEUE_SUFFIX}`;
}

/**
 * The two workers of one process: the general task queue (every workflow, and activities
 * that stay inside our walls) and the Stripe task queue, whose activity rate Temporal caps
 * across every worker of the cluster (`maxTaskQueueActivitiesPerSecond`), keeping all of
 * Ledgerlock under Stripe's rate limit without a limiter of our own.
 */
export async function createWorkers(options: WorkerOptions): Promise<[general: Worker, stripe: Worker]> {
  const common = {
    connection: options.connection,
    namespace: options.config.temporal.namespace,
    identity: options.deps.identity,
    dataConverter: options.dataConverter,
  };
  const general = await Worker.create({
    ...common,
    taskQueue: options.config.temporal.taskQueue,
    ...(options.workflowBundle
      ? { workflowBundle: options.workflowBundle, interceptors: { activity: [...tracingActivityInterceptors(), sagaStepTimer] } }
      : { workflowsPath: WORKFLOWS_PATH, interceptors: { workflowModules: workflowBundleOptions(options.config).workflowInterceptorModules, activity: [...tracingActivityInterceptors(), sagaStepTimer] } }),
    sinks: { ...tracingSinks(), ...sagaMetricsSinks },
    // Bounded: thousands of dunning campaigns parked on timers must not grow the worker without limit.
    maxCachedWorkflows: options.config.temporal.maxCachedWorkflows,
    activities: createActivities(options.deps),
  });
  const stripe = await Worker.create({
    ...common,
    taskQueue: stripeTaskQueue(options.config),
    activities: createStripeActivities(options.deps),
    interceptors: { activity: [...tracingActivityInterceptors(), sagaStepTimer] },
    maxTaskQueueActivitiesPerSecond: options.config.stripe.maxActivitiesPerSecond,
  });
  return [general, stripe];
}

/** Runs both workers until `until` settles, then drains them. */
export async function runWorkersUntil<T>(workers: readonly Worker[], until: Promise<T> | (() => Promise<T>)): Promise<T> {
  const [first, ...rest] = workers;
  let inner: Promise<T> = typeof until === 'function' ? Promise.resolve().then(until) : until;
  for (const worker of rest) inner = worker.runUntil(inner);
  return first!.runUntil(inner);
}

/**
 * The OpenTelemetry v1 activity interceptors: a span per activity execution, child of the
 * workflow's span that scheduled it, active while it runs, so the Stripe and KMS calls it
 * makes are its children; and the trace id in the activity's log lines. No-ops while
 * tracing is off.
 */
export function tracingActivityInterceptors(): ActivityInterceptorsFactory[] {
  return [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) })];
}

/**
 * The sink the workflow tracing interceptors export their spans through. Every worker of a
 * bundle with {@link WORKFLOW_BUNDLE_OPTIONS} needs it; with tracing off its processor drops them.
 */
export function tracingSinks(): InjectedSinks<OpenTelemetrySinks> {
  const { workflowSpanProcessor, resource } = tracing();
  return { exporter: makeWorkflowExporter(workflowSpanProcessor, resource) };
}
