import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config/config';
import { envFor } from './servers';

/** Where the servers of this test run listen, as the global setup provides them. */
export interface TestStack {
  readonly databaseUrl: string;
  readonly temporalAddress: string;
  /** The dev server's SQLite file: what the Temporal server stored, to inspect. */
  readonly temporalDbFile: string;
  readonly kmsEndpoint: string;
  readonly stripeApiUrl: string;
  readonly dataDir: string;
  readonly toolsDir: string;
  readonly temporalCli: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: TestStack;
  }
}

export function testStack(): TestStack {
  return inject('stack');
}

/** The environment that points a Ledgerlock process at this run's servers. */
export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return envFor(testStack(), overrides);
}

/** A validated config for this run's servers. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(overrides));
}
