import { describe, expect, it } from 'vitest';
import { ConfigError, ENV_DOCS, LOCAL_ONLY_STRIPE_KEY, loadConfig } from '../../src/config/config';

function problemsOf(env: Record<string, string>): { variable: string; message: string }[] {
  try {
    loadConfig(env, '/srv/ledgerlock');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('runs every local server on embedded defaults when nothing is set', () => {
    const config = loadConfig({}, '/srv/ledgerlock');
    expect(config.mode).toBe('local');
    expect(config.api).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(config.databaseUrl).toBe('postgres://127.0.0.1:5432/ledgerlock');
    expect(config.temporal.address).toBe('127.0.0.1:7233');
    expect(config.temporal.devServer).toEqual({ port: 7233, uiHost: '127.0.0.1', uiPort: 8233, uiBackendPort: 8234, httpPort: 7243, metricsPort: 7244 });
    expect(config.stripe).toMatchObject({ secretKey: LOCAL_ONLY_STRIPE_KEY, apiUrl: 'http://127.0.0.1:12111', mock: { port: 12111 } });
    expect(config.kms).toMatchObject({ endpoint: 'http://127.0.0.1:4599', local: { port: 4599 } });
    expect(config.regions).toEqual(['eu', 'us']);
    expect(config.dataDir).toBe('/srv/ledgerlock/.data');
  });

  it("lets the codec session be used from the local Web UI's origin (the proxy on TEMPORAL_UI_PORT), over HTTPS when the API has a certificate", () => {
    expect(loadConfig({ TEMPORAL_UI_PORT: '9233' }, '/srv').codec.corsOrigins).toEqual(['http://127.0.0.1:9233', 'http://localhost:9233']);
    const tls = loadConfig({ API_TLS_CERT: '/srv/tls.crt', API_TLS_KEY: '/srv/tls.key' }, '/srv');
    expect(tls.codec.corsOrigins).toEqual(['https://127.0.0.1:8233', 'https://localhost:8233']);
    expect(tls.codec.secureCookies).toBe(true);
  });

  it('talks to real Stripe when given a secret key, starting no stripe-mock', () => {
    const config = loadConfig({ STRIPE_SECRET_KEY: 'sk_test_51Abc' }, '/srv');
    expect(config.stripe.secretKey).toBe('sk_test_51Abc');
    expect(config.stripe.apiUrl).toBeUndefined();
    expect(config.stripe.mock).toBeUndefined();
  });

  it('talks to AWS KMS when given an AWS region, starting no local KMS', () => {
    const config = loadConfig({ AWS_REGION: 'eu-central-1' }, '/srv');
    expect(config.kms.region).toBe('eu-central-1');
    expect(config.kms.endpoint).toBeUndefined();
    expect(config.kms.local).toBeUndefined();
  });

  it('starts no dev server when pointed at a Temporal cluster', () => {
    const config = loadConfig({ TEMPORAL_ADDRESS: 'temporal.internal:7233' }, '/srv');
    expect(config.temporal.devServer).toBeUndefined();
  });

  it('runs the full Temporal server instead of the dev server with LEDGERLOCK_TEMPORAL=server, and neither when pointed at a cluster', () => {
    expect(loadConfig({}).temporal.fullServer).toBeUndefined();
    const full = loadConfig({ LEDGERLOCK_TEMPORAL: 'server', TEMPORAL_PORT: '17233', TEMPORAL_SERVER_PATH: '/opt/temporal-server' });
    expect(full.temporal.devServer).toBeUndefined();
    expect(full.temporal.fullServer).toEqual({ port: 17233, httpPort: 7243, metricsPort: 7244, executables: { server: '/opt/temporal-server' } });
    expect(full.temporal.address).toBe('127.0.0.1:17233');
    const cluster = loadConfig({ LEDGERLOCK_TEMPORAL: 'server', TEMPORAL_ADDRESS: 'temporal:7233' });
    expect([cluster.temporal.devServer, cluster.temporal.fullServer]).toEqual([undefined, undefined]);
    expect(() => loadConfig({ LEDGERLOCK_TEMPORAL: 'full' })).toThrow(/LEDGERLOCK_TEMPORAL/);
  });

  it('names every invalid variable at once', () => {
    const problems = problemsOf({ API_PORT: '70000', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud', TEMPORAL_ADDRESS: 'nohost' });
    expect(problems.map((p) => p.variable).sort()).toEqual(['API_PORT', 'DATABASE_URL', 'LOG_LEVEL', 'TEMPORAL_ADDRESS']);
  });

  it('never echoes a value, since some are secrets', () => {
    const problems = problemsOf({ STRIPE_SECRET_KEY: 'pk_live_notasecretkey' });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.variable).toBe('STRIPE_SECRET_KEY');
    expect(JSON.stringify(problems)).not.toContain('pk_live_notasecretkey');
  });

  it('gives production no defaults for endpoints and secrets', () => {
    const problems = problemsOf({ LEDGERLOCK_MODE: 'production' });
    expect(problems.map((p) => p.variable).sort()).toEqual([
      'API_TLS_CERT',
      'API_TLS_KEY',
      'AUDIT_CHECKPOINT_DIR',
      'AUTH_ISSUER',
      'AUTH_JWKS_URL',
      'AWS_REGION',
      'CODEC_CORS_ORIGINS',
      'DATABASE_APP_URL',
      'STRIPE_SECRET_KEY',
      'STRIPE_WEBHOOK_SECRET',
      'TEMPORAL_ADDRESS',
      'TEMPORAL_API_KEY',
      'TEMPORAL_TLS_CERT',
    ]);
  });

  describe('production transport', () => {
    const secretApiKey = 'tcld-api-key-do-not-echo-0123456789';
    const production: Record<string, string> = {
      LEDGERLOCK_MODE: 'production',
      DATABASE_APP_URL: 'postgres://ledgerlock_app@db.internal:5432/ledgerlock',
      AUDIT_CHECKPOINT_DIR: '/var/lib/ledgerlock/audit-checkpoints',
      TEMPORAL_ADDRESS: 'ledgerlock.a1b2c.tmprl.cloud:7233',
      TEMPORAL_API_KEY: secretApiKey,
      STRIPE_SECRET_KEY: 'sk_live_example',
      STRIPE_WEBHOOK_SECRET: 'whsec_exampleexampleexample',
      AWS_REGION: 'eu-central-1',
      AUTH_ISSUER: 'https://idp.example.com/',
      AUTH_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json',
      CODEC_CORS_ORIGINS: 'https://temporal-ui.example.com',
      API_TLS_CERT: '/certs/api.pem',
      API_TLS_KEY: '/certs/api-key.pem',
    };
    const without = (...names: string[]) => Object.fromEntries(Object.entries(production).filter(([k]) => !names.includes(k)));

    it('accepts TLS everywhere: HTTPS API, an https JWKS and Temporal Cloud with an API key over TLS', () => {
      const config = loadConfig(production, '/app');
      expect(config.temporal.apiKey).toBe(secretApiKey);
      expect(config.temporal.tls).toEqual({});
      expect(config.apiTls).toEqual({ certPath: '/certs/api.pem', keyPath: '/certs/api-key.pem' });
      expect(config.codec.secureCookies).toBe(true);
    });

    it('refuses an http: JWKS URL, naming AUTH_JWKS_URL', () => {
      expect(problemsOf({ ...production, AUTH_JWKS_URL: 'http://idp.example.com/jwks.json' })).toEqual([
        { variable: 'AUTH_JWKS_URL', message: 'must be an https:// URL when LEDGERLOCK_MODE=production' },
      ]);
      // Locally, an http issuer on the developer's machine stays possible.
      expect(loadConfig({ AUTH_JWKS_URL: 'http://127.0.0.1:9000/jwks.json' }, '/srv').auth.jwksUrl).toBe('http://127.0.0.1:9000/jwks.json');
    });

    it('requires API TLS unless API_TLS_TERMINATED_BY=proxy says a proxy terminates it', () => {
      const problems = problemsOf(without('API_TLS_CERT', 'API_TLS_KEY'));
      expect(problems.map((p) => p.variable)).toEqual(['API_TLS_CERT', 'API_TLS_KEY']);
      expect(problems[0]!.message).toContain('API_TLS_TERMINATED_BY=proxy');
      expect(problemsOf(without('API_TLS_KEY')).map((p) => p.variable)).toEqual(['API_TLS_KEY']);
      const proxied = loadConfig({ ...without('API_TLS_CERT', 'API_TLS_KEY'), API_TLS_TERMINATED_BY: 'proxy' }, '/app');
      expect(proxied.apiTls).toBeUndefined();
      // The browser reaches the codec server over the proxy's HTTPS: the cookie stays Secure.
      expect(proxied.codec.secureCookies).toBe(true);
      expect(problemsOf({ ...production, API_TLS_TERMINATED_BY: 'nginx' }).map((p) => p.variable)).toEqual(['API_TLS_TERMINATED_BY']);
    });

    it('requires TLS to Temporal: mutual TLS or an API key', () => {
      const problems = problemsOf(without('TEMPORAL_API_KEY'));
      expect(problems.map((p) => p.variable)).toEqual(['TEMPORAL_TLS_CERT', 'TEMPORAL_API_KEY']);
      expect(problems[0]!.message).toMatch(/TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY .*or TEMPORAL_API_KEY/);
      // A CA alone is TLS without any client credential: not enough.
      expect(problemsOf({ ...without('TEMPORAL_API_KEY'), TEMPORAL_TLS_CA: '/certs/ca.pem' }).map((p) => p.variable)).toEqual(['TEMPORAL_TLS_CERT', 'TEMPORAL_API_KEY']);
      expect(problemsOf({ ...without('TEMPORAL_API_KEY'), TEMPORAL_TLS_CERT: '/certs/client.pem' }).map((p) => p.variable)).toEqual(['TEMPORAL_TLS_KEY']);
      const mtls = loadConfig({ ...without('TEMPORAL_API_KEY'), TEMPORAL_TLS_CERT: '/certs/client.pem', TEMPORAL_TLS_KEY: '/certs/client-key.pem', TEMPORAL_TLS_CA: '/certs/ca.pem' }, '/app');
      expect(mtls.temporal.tls).toEqual({ clientCert: { certPath: '/certs/client.pem', keyPath: '/certs/client-key.pem' }, caPath: '/certs/ca.pem' });
      expect(mtls.temporal.apiKey).toBeUndefined();
    });

    it('never sends an API key without TLS, in any mode, and never echoes it', () => {
      expect(loadConfig({ TEMPORAL_ADDRESS: 'temporal.internal:7233', TEMPORAL_API_KEY: secretApiKey }, '/srv').temporal.tls).toEqual({});
      const problems = problemsOf({ ...production, TEMPORAL_API_KEY: `${secretApiKey} with spaces` });
      expect(problems.map((p) => p.variable)).toEqual(['TEMPORAL_API_KEY']);
      expect(JSON.stringify(problems)).not.toContain(secretApiKey);
    });

    it('marks the codec cookie Secure in production always, locally only over HTTPS', () => {
      expect(loadConfig({}, '/srv').codec.secureCookies).toBe(false);
      expect(loadConfig({ API_TLS_CERT: '/c.pem', API_TLS_KEY: '/k.pem' }, '/srv').codec.secureCookies).toBe(true);
      expect(loadConfig(production, '/app').codec.secureCookies).toBe(true);
    });
  });

  it('accepts several webhook secrets, for rolling the endpoint secret, and refuses anything else without echoing it', () => {
    const config = loadConfig({ STRIPE_WEBHOOK_SECRET: 'whsec_current0123456789ab,whsec_next0123456789abcdef' }, '/srv');
    expect(config.stripe.webhookSecrets).toEqual(['whsec_current0123456789ab', 'whsec_next0123456789abcdef']);
    expect(loadConfig({}, '/srv').stripe.webhookSecrets).toBeUndefined();
    const problems = problemsOf({ STRIPE_WEBHOOK_SECRET: 'whsec_current0123456789ab,sk_test_notawebhooksecret' });
    expect(problems.map((p) => p.variable)).toEqual(['STRIPE_WEBHOOK_SECRET']);
    expect(JSON.stringify(problems)).not.toContain('notawebhooksecret');
  });

  it('builds dunning policies from the default, DUNNING_POLICY and per-price overrides', () => {
    const config = loadConfig(
      {
        DUNNING_POLICY: JSON.stringify({ retryOffsetsSeconds: [86_400, 172_800], maxAttempts: 2 }),
        DUNNING_POLICY_BY_PRICE: JSON.stringify({ price_gold: { finalAction: 'leave_past_due' } }),
      },
      '/srv',
    );
    expect(config.dunning.default).toMatchObject({ name: 'default', retryOffsetsSeconds: [86_400, 172_800], maxAttempts: 2, finalAction: 'cancel', gracePeriodSeconds: 7 * 86_400 });
    expect(config.dunning.byPrice.price_gold).toMatchObject({ name: 'price_gold', retryOffsetsSeconds: [86_400, 172_800], finalAction: 'leave_past_due' });
    expect(loadConfig({}, '/srv').dunning.default.hardDeclineCodes).toEqual(expect.arrayContaining(['lost_card', 'stolen_card', 'pickup_card', 'fraudulent']));
  });

  it('names what is wrong with a dunning policy', () => {
    expect(problemsOf({ DUNNING_POLICY: '{not json' })).toEqual([{ variable: 'DUNNING_POLICY', message: 'must be JSON' }]);
    expect(problemsOf({ DUNNING_POLICY: JSON.stringify({ retryOffsetsSeconds: [5, 1] }) })[0]).toMatchObject({ variable: 'DUNNING_POLICY', message: expect.stringContaining('retryOffsetsSeconds') });
    expect(problemsOf({ DUNNING_POLICY: JSON.stringify({ finalAction: 'shrug' }) })[0]).toMatchObject({ variable: 'DUNNING_POLICY', message: expect.stringContaining('finalAction') });
    expect(problemsOf({ DUNNING_POLICY_BY_PRICE: JSON.stringify({ gold: { maxAttempts: 2 } }) })[0]).toMatchObject({ variable: 'DUNNING_POLICY_BY_PRICE' });
  });

  it('refuses a live Stripe key outside production', () => {
    expect(problemsOf({ STRIPE_SECRET_KEY: 'sk_live_abc' })).toEqual([
      { variable: 'STRIPE_SECRET_KEY', message: 'a live key is only accepted with LEDGERLOCK_MODE=production' },
    ]);
  });

  it('needs both halves of the Temporal mTLS pair', () => {
    expect(problemsOf({ TEMPORAL_TLS_CERT: '/certs/client.pem' }).map((p) => p.variable)).toEqual(['TEMPORAL_TLS_KEY']);
  });

  it('returns a deeply frozen config', () => {
    const config = loadConfig({}, '/srv');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.temporal)).toBe(true);
    expect(Object.isFrozen(config.regions)).toBe(true);
  });

  it('documents every variable it reads', () => {
    expect(Object.keys(ENV_DOCS)).toContain('DATABASE_URL');
    const problems = problemsOf({ KMS_KEY_ALIAS_PREFIX: 'ledgerlock' });
    expect(problems[0]!.variable).toBe('KMS_KEY_ALIAS_PREFIX');
  });
});
