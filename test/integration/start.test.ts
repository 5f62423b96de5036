import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import pg from 'pg';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { sql } from 'kysely';
import { appendAuditEntry } from '../../src/audit/audit-dal';
import { checkpointName } from '../../src/audit/audit-checkpoints';
import { loadConfig } from '../../src/config/config';
import { connectionOptions, createDb, dropDatabase } from '../../src/db/database';
import { REPO_ROOT } from '../../src/stack/paths';
import { freeLocalPorts } from '../../src/stack/local-servers';
import { tcpProbe } from '../../src/stack/process';
import { cliEnv, spawnCli } from '../support/spawn';
import { testStack } from '../support/stack';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startEnv() {
  const stack = testStack();
  const free = await freeLocalPorts();
  const url = new URL(stack.databaseUrl);
  url.pathname = `${url.pathname}_start_${Date.now().toString(36)}`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-start-'));
  const ports = {
    api: Number(free.API_PORT),
    temporal: Number(free.TEMPORAL_PORT),
    ui: Number(free.TEMPORAL_UI_PORT),
    temporalHttp: Number(free.TEMPORAL_HTTP_PORT),
    temporalMetrics: Number(free.TEMPORAL_METRICS_PORT),
    kms: Number(free.KMS_PORT),
    stripe: Number(free.STRIPE_MOCK_PORT),
    codec: Number(free.CODEC_PORT),
    metrics: Number(free.METRICS_PORT),
  };
  return {
    ports,
    dataDir,
    databaseUrl: url.toString(),
    env: { ...free, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: stack.toolsDir, DATABASE_URL: url.toString() },
  };
}

describe('ledgerlock start (npm start)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  it('starts the whole stack, refuses a second start, and stops leaving nothing listening', async () => {
    const { ports, env, dataDir, databaseUrl } = await startEnv();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }), () => dropDatabase(databaseUrl));

    const first = spawnCli(['start'], env);
    cleanups.push(() => void first.child.kill('SIGKILL'));
    await first.waitFor('Ledgerlock is ready', 90_000);

    // The ready table says what runs where.
    expect(first.stdout()).toContain(`http://127.0.0.1:${ports.api}`);
    expect(first.stdout()).toContain(`http://127.0.0.1:${ports.ui}`);
    // The app process's metrics, on their own port: Ledgerlock's and the Temporal SDK's.
    expect(first.stdout()).toContain(`http://127.0.0.1:${ports.metrics}/metrics`);
    const metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
    expect(metrics).toContain('# TYPE ledgerlock_saga_started_total counter');
    expect(metrics).toMatch(/^temporal_num_pollers\{/m);
    const run = JSON.parse(readFileSync(path.join(dataDir, 'run.json'), 'utf8')) as { servers: { name: string; pid: number }[] };
    expect(run.servers.map((s) => s.name).sort()).toEqual(['local-kms', 'stripe-mock', 'temporal']);

    // The dev server's HTTP API and metrics listen where they were told, not on ports of their own choosing.
    await tcpProbe(ports.temporalHttp);
    expect(await (await fetch(`http://127.0.0.1:${ports.temporalMetrics}/metrics`)).text()).toContain('# TYPE');
    const health = await fetch(`http://127.0.0.1:${ports.api}/healthz`);
    expect(health.status).toBe(200);
    expect(((await health.json()) as { status: string }).status).toBe('ok');
    const ui = await fetch(`http://127.0.0.1:${ports.ui}/`);
    expect(ui.status).toBe(200);

    // The key rotation schedule exists: every 90 days, a run skipped while one is still running.
    const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    try {
      const { schedule } = await connection.workflowService.describeSchedule({ namespace: 'default', scheduleId: 'key-rotation' });
      expect(Number(schedule?.spec?.interval?.[0]?.interval?.seconds)).toBe(90 * 86_400);
      expect(schedule?.policies?.overlapPolicy).toBe(temporal.api.enums.v1.ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_SKIP);
      expect(schedule?.action?.startWorkflow?.workflowType?.name).toBe('keyRotationWorkflow');
      // And the retention schedule: daily, skipping a run while one is still running.
      const retention = (await connection.workflowService.describeSchedule({ namespace: 'default', scheduleId: 'customer-retention' })).schedule;
      expect(Number(retention?.spec?.interval?.[0]?.interval?.seconds)).toBe(86_400);
      expect(retention?.policies?.overlapPolicy).toBe(temporal.api.enums.v1.ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_SKIP);
      expect(retention?.action?.startWorkflow?.workflowType?.name).toBe('customerRetentionWorkflow');
    } finally {
      await connection.close();
    }

    const second = spawnCli(['start'], env);
    expect(await second.exited).not.toBe(0);
    expect(second.stderr()).toMatch(/already running \(pid \d+/);
    // The refused start disturbed nothing.
    expect((await fetch(`http://127.0.0.1:${ports.api}/healthz`)).status).toBe(200);

    // An audit entry appended as the application role, which is what the stack runs as.
    const app = createDb(loadConfig({ DATABASE_URL: databaseUrl }).databaseAppUrl, { max: 1 });
    try {
      await appendAuditEntry(app, { idempotencyKey: 'start-test:1', actor: 'svc-start-test', action: 'test.start', subjectType: 'test', subjectId: 't1' });
      const { rows } = await sql<{ user: string }>`select current_user as user`.execute(app);
      expect(rows[0]!.user).toBe('ledgerlock_app');
    } finally {
      await app.destroy();
    }

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    // The stopping worker signed the chain's head into the data folder.
    const checkpoint = path.join(dataDir, 'audit-checkpoints', new URL(databaseUrl).pathname.slice(1), checkpointName('1'));
    expect(JSON.parse(readFileSync(checkpoint, 'utf8'))).toMatchObject({ seq: '1', database: new URL(databaseUrl).pathname.slice(1) });
    for (const port of Object.values(ports)) await expect(tcpProbe(port), `port ${port}`).rejects.toThrow();
    for (const server of run.servers) expect(pidAlive(server.pid), server.name).toBe(false);
    expect(existsSync(path.join(dataDir, 'ledgerlock.pid'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'temporal.sqlite'))).toBe(true);
  });

  it('names the variable to change when a port is taken, and starts nothing', async () => {
    const { ports, env, dataDir } = await startEnv();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(ports.api, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

    const cli = spawnCli(['start'], env);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain(`port ${ports.api} (Ledgerlock API) is in use; free it or set API_PORT`);
    expect(cli.stderr()).not.toMatch(/\n\s+at /);
    for (const port of [ports.temporal, ports.kms, ports.stripe]) await expect(tcpProbe(port)).rejects.toThrow();
  });

  it('fails at start with a message naming each bad variable', async () => {
    const cli = spawnCli(['start'], { API_PORT: 'eighty', LOG_LEVEL: 'chatty' });
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain('API_PORT');
    expect(cli.stderr()).toContain('LOG_LEVEL');
  });

  it('survives terminated PostgreSQL connections, restarts a killed app process, and leaves nothing behind when npm gets SIGTERM', async () => {
    const { ports, env, dataDir, databaseUrl } = await startEnv();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }), () => dropDatabase(databaseUrl));
    // As a process supervisor runs it: npm, its shell, then our node process.
    const npm = spawn('npm', ['start', '--silent'], { cwd: REPO_ROOT, env: cliEnv({ ...env, LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => void npm.kill('SIGKILL'));
    let out = '';
    npm.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    npm.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const npmExited = new Promise<void>((resolve) => npm.on('exit', () => resolve()));
    await vi.waitFor(() => expect(out).toContain('Ledgerlock is ready'), { timeout: 90_000, interval: 250 });
    const run = JSON.parse(readFileSync(path.join(dataDir, 'run.json'), 'utf8')) as { pid: number; appPid: number; servers: { name: string; pid: number }[] };
    cleanups.push(() => {
      for (const pid of [run.pid, run.appPid, ...run.servers.map((s) => s.pid)]) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    });
    const api = `http://127.0.0.1:${ports.api}`;

    // What a PostgreSQL restart or failover does to every connection: the process stays up and later requests succeed.
    const admin = new pg.Client(connectionOptions(databaseUrl));
    await admin.connect();
    try {
      for (let i = 0; i < 3; i++) {
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    } finally {
      await admin.end();
    }
    await vi.waitFor(async () => expect((await fetch(`${api}/healthz`)).status).toBe(200), { timeout: 20_000, interval: 250 });
    expect(pidAlive(run.appPid)).toBe(true);
    expect(out).not.toContain('app process exited');
    expect(out).not.toMatch(/Emitted 'error' event/);

    // The app process killed outright: restarted with backoff, the restart logged, the API back.
    process.kill(run.appPid, 'SIGKILL');
    await vi.waitFor(() => expect(out).toContain('"msg":"app process restarted"'), { timeout: 60_000, interval: 250 });
    expect(out).toContain('"msg":"app process exited; restarting"');
    expect((await fetch(`${api}/healthz`)).status).toBe(200);

    // SIGTERM to npm itself, as a process supervisor sends it: npm does not pass it on, yet nothing stays behind.
    npm.kill('SIGTERM');
    await npmExited;
    await vi.waitFor(
      async () => {
        for (const port of Object.values(ports)) await expect(tcpProbe(port), `port ${port}`).rejects.toThrow();
        for (const pid of [run.pid, ...run.servers.map((s) => s.pid)]) expect(pidAlive(pid), `pid ${pid}`).toBe(false);
      },
      { timeout: 45_000, interval: 500 },
    );
    expect(existsSync(path.join(dataDir, 'ledgerlock.pid'))).toBe(false);
  });
});
