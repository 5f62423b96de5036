import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config/config';

/** Where the servers of this test run listen, as the global setup provides them. */
export interface TestStack {
  readonly databaseUrl: string;
  readonly temporalAddress: string;
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
  const stack = testStack();
  return {
    LEDGERLOCK_MODE: 'local',
    LEDGERLOCK_DATA_DIR: stack.dataDir,
    LEDGERLOCK_TOOLS_DIR: stack.toolsDir,
    LOG_LEVEL: 'warn',
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    KMS_ENDPOINT: stack.kmsEndpoint,
    STRIPE_API_URL: stack.stripeApiUrl,
    API_PORT: '0',
    ...overrides,
  };
}

/** A validated config for this run's servers. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(overrides));
}
