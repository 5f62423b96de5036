import { ScheduleAlreadyRunning, type Client, type ScheduleOptions, type ScheduleOptionsAction, type ScheduleSpec } from '@temporalio/client';

/**
 * Creates a schedule, or brings an existing one in line with what is given (spec, action and
 * policies; its state and the rest are left as they are). Safe to run on every start, from
 * any number of processes.
 */
export async function ensureSchedule(
  client: Pick<Client, 'schedule'>,
  scheduleId: string,
  wanted: { readonly spec: ScheduleSpec; readonly action: ScheduleOptionsAction; readonly policies: NonNullable<ScheduleOptions['policies']> },
): Promise<'created' | 'updated'> {
  try {
    await client.schedule.create({ scheduleId, spec: wanted.spec, action: wanted.action, policies: wanted.policies });
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, spec: wanted.spec, action: wanted.action, policies: { ...previous.policies, ...wanted.policies } }));
    return 'updated';
  }
}
