import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, ENV_DOCS, loadConfig, type EnvName } from '../../src/config/config';

/**
 * loadConfig against arbitrary values for every variable: a Config, or a ConfigError naming
 * the variable (or the other half of its pair), never another exception and never the value.
 */

const NAMES = Object.keys(ENV_DOCS) as EnvName[];
/** Variables whose problem may be reported on the other half of a pair (crossFieldProblems). */
const PARTNERS: Partial<Record<EnvName, EnvName>> = {
  TEMPORAL_TLS_CERT: 'TEMPORAL_TLS_KEY',
  TEMPORAL_TLS_KEY: 'TEMPORAL_TLS_CERT',
  API_TLS_CERT: 'API_TLS_KEY',
  API_TLS_KEY: 'API_TLS_CERT',
};

/** The characters URL parsers trip on. */
const urlish = fc.string({ unit: fc.constantFrom('[', ']', ' ', '%', '@', ':', '/', '#', '?', '\\', 'a', '1', '.') });
const prefixed = fc
  .constantFrom('postgres://', 'postgresql://', 'http://', 'https://', 'whsec_', 'sk_test_', 'sk_live_', 'alias/', 'price_', '127.0.0.1:', 'eu-west-')
  .chain((prefix) => fc.oneof(fc.string(), urlish).map((rest) => prefix + rest));
const value = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.json(),
  fc.integer().map(String),
  fc.double().map(String),
  prefixed,
  fc.dictionary(fc.string().map((k) => `price_${k}`), fc.record({ maxAttempts: fc.jsonValue() }, { requiredKeys: [] })).map((o) => JSON.stringify(o)),
);

function load(env: Record<string, string>): { config?: unknown; error?: ConfigError } {
  try {
    return { config: loadConfig(env, '/tmp') };
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return { error: err as ConfigError };
  }
}

describe('loadConfig (property)', () => {
  it('answers any value of any one variable with a Config or a ConfigError naming it, never echoing the value', () => {
    fc.assert(
      fc.property(fc.constantFrom(...NAMES), value, fc.constantFrom('local', 'production', undefined), (name, text, mode) => {
        const env: Record<string, string> = { [name]: text };
        if (mode && name !== 'LEDGERLOCK_MODE') env.LEDGERLOCK_MODE = mode;
        const { error } = load(env);
        if (!error) return;
        for (const problem of error.problems) expect(NAMES).toContain(problem.variable);
        if (mode !== 'production') {
          const allowed = [name, PARTNERS[name]];
          for (const problem of error.problems) expect(allowed).toContain(problem.variable);
        }
        // Long enough not to occur in a message by chance.
        if (text.trim().length >= 12) expect(error.message).not.toContain(text.trim());
      }),
      { numRuns: 3000 },
    );
  });

  it('answers any environment of arbitrary values with a Config or a ConfigError naming only known variables', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...NAMES), value, { maxKeys: 12 }), (env) => {
        const { error } = load(env);
        for (const problem of error?.problems ?? []) expect(NAMES).toContain(problem.variable);
      }),
      { numRuns: 1000 },
    );
  });

  // Found by the property above: `new URL` threw a TypeError (carrying the URL, password and all) building the app's URL.
  it('regression: refuses a DATABASE_URL that looks like postgres:// but is no URL, naming it', () => {
    for (const url of ['postgres://[', 'postgres://user:secret-pw@ho st/db']) {
      const { error } = load({ DATABASE_URL: url });
      expect(error?.problems).toEqual([{ variable: 'DATABASE_URL', message: 'must be a postgres:// URL' }]);
      expect(error?.message).not.toContain('secret-pw');
    }
    expect(load({ LEDGERLOCK_MODE: 'production', DATABASE_APP_URL: 'postgresql://[' }).error?.problems).toContainEqual({ variable: 'DATABASE_APP_URL', message: 'must be a postgres:// URL' });
  });
});
