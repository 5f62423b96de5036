import { ScheduleAlreadyRunning, ServiceError, type Client, type ScheduleOptions, type ScheduleOptionsAction, type ScheduleSpec } from '@temporalio/client';
import type { Logger } from '../log';

/** DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE: worth another try. */
const TRANSIENT_GRPC_CODES = new Set([4, 8, 10, 13, 14]);

function transientGrpcCode(err: unknown): number | undefined {
  const code = err instanceof ServiceError ? (err.cause as { code?: unknown } | undefined)?.code : undefined;
  return typeof code === 'number' && TRANSIENT_GRPC_CODES.has(code) ? code : undefined;
}

/**
 * Creates a schedule, or brings an existing one in line with what is given (spec, action and
 * policies; its state and the rest are left as they are). Safe to run on every start, from
 * any number of processes. Updating reads the schedule first, which a Temporal server that
 * has just started may not answer yet (its schedule workers are still starting): such
 * transient failures are retried for up to `retryForMs`.
 */
export async function ensureSchedule(
  client: Pick<Client, 'schedule'>,
  log: Pick<Logger, 'warn'>,
  scheduleId: string,
  wanted: { readonly spec: ScheduleSpec; readonly action: ScheduleOptionsAction; readonly policies: NonNullable<ScheduleOptions['policies']> },
  retryForMs = 60_000,
): Promise<'created' | 'updated'> {
  try {
    await client.schedule.create({ scheduleId, spec: wanted.spec, action: wanted.action, policies: wanted.policies });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  const deadline = Date.now() + retryForMs;
  for (;;) {
    try {
      await client.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, spec: wanted.spec, action: wanted.action, policies: { ...previous.policies, ...wanted.policies } }));
      return 'updated';
    } catch (err) {
      const code = transientGrpcCode(err);
      if (code === undefined || Date.now() > deadline) throw err;
      log.warn({ scheduleId, grpcCode: code }, 'schedule not readable yet; retrying');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}
