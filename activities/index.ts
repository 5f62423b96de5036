import { createCanaryActivities } from './canary';

/** Dependencies every activity factory draws from, narrowed per factory with Pick<>. */
export interface ActivityDeps {
  readonly identity: string;
}

/** All activities of the general task queue; workflows proxy `ReturnType<typeof createActivities>`. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createCanaryActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
