import path from 'node:path';
import { bundleWorkflowCode, Worker, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../../activities';
import type { Config } from '../config/config';

export const WORKFLOWS_PATH = path.resolve(__dirname, '../../workflows/index.ts');

/**
 * Bundles the workflow code once. Started early by `npm start` so webpack runs while the
 * servers boot, then handed to {@link createWorker}.
 */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
}

const quietBundlerLogger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => process.stderr.write(`workflow bundler: ${message}\n`),
  error: (message: string) => process.stderr.write(`workflow bundler: ${message}\n`),
  log: () => undefined,
};

export interface WorkerOptions {
  readonly config: Pick<Config, 'temporal'>;
  readonly connection: NativeConnection;
  readonly deps: ActivityDeps;
  readonly workflowBundle?: WorkflowBundleWithSourceMap;
}

/** The worker of the general task queue: every workflow plus the activities that do not call Stripe. */
export async function createWorker(options: WorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.config.temporal.namespace,
    taskQueue: options.config.temporal.taskQueue,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(options.deps),
    identity: options.deps.identity,
  });
}
