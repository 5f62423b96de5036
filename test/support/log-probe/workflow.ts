import { log, proxyActivities } from '@temporalio/workflow';
import type { ProbeSecrets } from './secrets';

const { logFromActivity } = proxyActivities<{ logFromActivity(secrets: ProbeSecrets): Promise<void> }>({ startToCloseTimeout: '30 seconds' });

/** Logs secrets through the workflow logger (the SDK's sink), then has an activity do the same. */
export async function logProbeWorkflow(secrets: ProbeSecrets): Promise<void> {
  log.info('probe: workflow', { customer: { email: secrets.email, name: secrets.name }, authorization: `Bearer ${secrets.token}` });
  await logFromActivity(secrets);
}
