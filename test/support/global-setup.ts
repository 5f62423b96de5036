import type { TestProject } from 'vitest/node';
import { startTestServers } from './servers';

/** One set of real servers for the whole run; see startTestServers. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { stack, stop } = await startTestServers('test');
  project.provide('stack', stack);
  return stop;
}
