/**
 * The bare baseline's activities: nothing to do, one for each queue so that the Web UI
 * (and the history) tells the two lanes apart. Never registered by a production worker.
 */
export function createNoopActivities() {
  return {
    async noop(): Promise<void> {},
    async noopOnSecondQueue(): Promise<void> {},
  };
}

export type NoopActivities = ReturnType<typeof createNoopActivities>;
