import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REDACTED } from '../../src/log';
import type { ProbeSecrets } from '../support/log-probe/secrets';
import { cliEnv } from '../support/spawn';
import { testStack } from '../support/stack';

const PROBE = path.resolve(__dirname, '../support/log-probe/process.ts');

/** Runs the log probe as a process of its own; resolves with its stdout once it exits 0. */
function runProbe(secrets: ProbeSecrets): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', PROBE], {
      env: cliEnv({ TEMPORAL_ADDRESS: testStack().temporalAddress, LOG_PROBE_SECRETS: JSON.stringify(secrets) }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`log probe exited with ${code}\n${stdout}\n${stderr}`))));
  });
}

describe('logs', () => {
  it('are one JSON line per event, from our code and the Temporal SDK alike, with no secret or personal value in any', async () => {
    const tag = randomUUID().replaceAll('-', '');
    const secrets: ProbeSecrets = {
      token: `eyJprobe.${tag}.sig`,
      cookie: `ll_codec_session=${tag}`,
      stripeKey: `sk_test_${tag}`,
      webhookSecret: `whsec_${tag}`,
      email: `log-probe-${tag}@example.com`,
      name: `Ada ${tag}`,
      phone: `+4915${tag.slice(0, 8).replace(/\D/g, '7')}`,
      cardNumber: `4242${tag.slice(0, 12)}`,
      dataKey: randomBytes(32).toString('base64'),
    };
    const { stdout, stderr } = await runProbe(secrets);

    const lines = stdout.trim().split('\n');
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) expect(entry).toMatchObject({ level: expect.any(String), time: expect.any(String), msg: expect.any(String) });
    const byMsg = (msg: string) => entries.find((e) => e.msg === msg);

    // Every way in reached the same logger…
    const direct = byMsg('probe: direct');
    expect(direct).toMatchObject({
      service: 'ledgerlock',
      authorization: REDACTED,
      req: { headers: { authorization: REDACTED, cookie: REDACTED, 'stripe-signature': REDACTED } },
      config: { stripe: { secretKey: REDACTED, webhookSecret: REDACTED } },
      customer: { email: REDACTED, name: REDACTED, phone: REDACTED, address: REDACTED },
      paymentMethod: { card: REDACTED },
      kms: { Plaintext: REDACTED },
      profile: REDACTED,
      customerId: 'cust_0123456789abcdef0123',
    });
    expect(byMsg('probe: child')).toMatchObject({ level: 'warn', workflowId: 'probe-child', token: REDACTED, apiKey: REDACTED });
    expect(byMsg('probe: runtime logger')).toMatchObject({ password: REDACTED, email: REDACTED });
    // …the workflow's log through the SDK's sink, the activity's through its context, each with the SDK's ids.
    const done = byMsg('probe: done') as { workflowId: string };
    expect(byMsg('probe: workflow')).toMatchObject({ sdkComponent: 'workflow', workflowId: done.workflowId, workflowType: 'logProbeWorkflow', authorization: REDACTED, customer: { email: REDACTED, name: REDACTED } });
    expect(byMsg('probe: activity')).toMatchObject({ sdkComponent: 'activity', workflowId: done.workflowId, activityType: 'logFromActivity', secret: REDACTED, customer: { email: REDACTED, phone: REDACTED } });
    // The SDK's own lines (worker lifecycle) are ours too, not its default logger's on stderr.
    expect(entries.some((e) => e.sdkComponent === 'worker')).toBe(true);

    // And nowhere, in any line or on stderr, a secret.
    for (const [what, value] of Object.entries(secrets)) {
      expect(stdout.includes(value), `${what} in stdout`).toBe(false);
      expect(stderr.includes(value), `${what} in stderr`).toBe(false);
    }
    expect(stdout).not.toContain(tag);
    // Not even encoded: the SDK's debug lines would carry payloads (base64) if they were let through.
    for (const entry of entries) for (const text of base64Leaves(entry)) expect(text, String(entry.msg)).not.toContain(tag);
  });
});

/** Every string value of `value` that looks like base64, decoded. */
function base64Leaves(value: unknown): string[] {
  if (typeof value === 'string') return /^[A-Za-z0-9+/_-]{12,}={0,2}$/.test(value) ? [Buffer.from(value, 'base64').toString('latin1')] : [];
  if (Array.isArray(value)) return value.flatMap(base64Leaves);
  if (value && typeof value === 'object') return Object.values(value).flatMap(base64Leaves);
  return [];
}
