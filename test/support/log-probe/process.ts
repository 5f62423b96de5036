/**
 * A process of its own that logs secrets the ways Ledgerlock code can: through the process
 * logger directly, and through the Temporal SDK (the Runtime logger, a workflow's `log` and an
 * activity's `log`), all with the production logger and Runtime installation. Its stdout is
 * what test/integration/logging.test.ts reads. Run with tsx; configured by the environment.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { log as activityLog } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createLogger } from '../../../src/log';
import { installTemporalRuntime } from '../../../src/temporal/runtime-telemetry';
import type { ProbeSecrets } from './secrets';

const secrets = JSON.parse(process.env.LOG_PROBE_SECRETS!) as ProbeSecrets;
const address = process.env.TEMPORAL_ADDRESS!;
const taskQueue = `log-probe-${process.pid}`;

async function main(): Promise<void> {
  const log = createLogger('debug', { service: 'ledgerlock' });
  installTemporalRuntime(log, 'info');

  // Everything a careless call site could hand the logger, at the depths pino's paths cover.
  log.info(
    {
      authorization: `Bearer ${secrets.token}`,
      req: { headers: { authorization: `Bearer ${secrets.token}`, cookie: secrets.cookie, 'stripe-signature': `t=1,v1=${secrets.webhookSecret}` } },
      config: { stripe: { secretKey: secrets.stripeKey, webhookSecret: secrets.webhookSecret } },
      customer: { email: secrets.email, name: secrets.name, phone: secrets.phone, address: { line1: secrets.name } },
      paymentMethod: { card: { number: secrets.cardNumber, cvc: '123' } },
      kms: { Plaintext: secrets.dataKey },
      profile: { email: secrets.email },
      customerId: 'cust_0123456789abcdef0123',
    },
    'probe: direct',
  );
  log.child({ workflowId: 'probe-child' }).warn({ token: secrets.token, apiKey: secrets.stripeKey }, 'probe: child');
  Runtime.instance().logger.info('probe: runtime logger', { password: secrets.token, email: secrets.email });

  const workerConnection = await NativeConnection.connect({ address });
  const worker = await Worker.create({
    connection: workerConnection,
    taskQueue,
    workflowsPath: path.join(__dirname, 'workflow.ts'),
    activities: {
      async logFromActivity(given: ProbeSecrets) {
        activityLog.info('probe: activity', { customer: { email: given.email, phone: given.phone }, secret: given.webhookSecret });
      },
    },
  });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const workflowId = `log-probe-${randomUUID()}`;
  await worker.runUntil(client.workflow.execute('logProbeWorkflow', { taskQueue, workflowId, args: [secrets] }));
  log.info({ workflowId }, 'probe: done');
  await connection.close();
  await workerConnection.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
