import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { cachedReadiness, DEPENDENCIES, type Dependency, type HealthCheck } from '../../src/health/health';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/log';

const quiet = createLogger('error', {}, () => undefined);

function countingChecks(fail: Partial<Record<Dependency, boolean>> = {}) {
  const calls: Record<Dependency, number> = { temporal: 0, postgres: 0, kms: 0, stripe: 0 };
  const checks = Object.fromEntries(
    DEPENDENCIES.map((name): [Dependency, HealthCheck] => [
      name,
      async () => {
        calls[name] += 1;
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (fail[name]) throw new Error(`${name} down`);
      },
    ]),
  ) as Record<Dependency, HealthCheck>;
  return { calls, checks };
}

describe('readiness', () => {
  it('checks each dependency once per window, however many ask, and again once the window has passed', async () => {
    let clock = 0;
    const { calls, checks } = countingChecks({ stripe: true });
    const ready = cachedReadiness(checks, quiet, { ttlMs: 5_000, now: () => clock });
    const reports = await Promise.all(Array.from({ length: 50 }, () => ready()));
    expect(new Set(reports).size).toBe(1);
    expect(reports[0]!.status).toBe('unavailable');
    expect(reports[0]!.dependencies.stripe.status).toBe('down');
    expect(calls).toEqual({ temporal: 1, postgres: 1, kms: 1, stripe: 1 });

    clock = 4_999;
    await ready();
    expect(calls.stripe).toBe(1);
    clock = 5_000;
    await ready();
    expect(calls).toEqual({ temporal: 2, postgres: 2, kms: 2, stripe: 2 });
  });

  it('serves /healthz without reaching a dependency, and a flood of /readyz with one round of checks', async () => {
    const { calls, checks } = countingChecks({ kms: true });
    const server = createApp({ log: quiet, healthChecks: checks, readinessTtlMs: 60_000 }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const live = await Promise.all(Array.from({ length: 100 }, () => fetch(`${url}/healthz`)));
      expect(live.every((res) => res.status === 200)).toBe(true);
      expect(calls).toEqual({ temporal: 0, postgres: 0, kms: 0, stripe: 0 });

      const ready = await Promise.all(Array.from({ length: 100 }, () => fetch(`${url}/readyz`)));
      expect(ready.every((res) => res.status === 503)).toBe(true);
      expect(((await ready[0]!.json()) as { dependencies: Record<Dependency, { status: string }> }).dependencies.kms.status).toBe('down');
      expect(calls).toEqual({ temporal: 1, postgres: 1, kms: 1, stripe: 1 });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
