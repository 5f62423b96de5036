import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { COMMANDS } from '../../src/cli/main';
import { ENV_DOCS, loadConfig, ownerDatabaseUrl, SDK_ENV } from '../../src/config/config';
import { REPO_ROOT } from '../../src/stack/paths';
import { SERVERS, temporalServerModuleDir } from '../../src/stack/servers';
import {
  TEMPORAL_SETUP_SCRIPTS,
  TEMPORAL_SQL_PLUGIN,
  temporalNamespaceEnv,
  temporalSchemaEnv,
  temporalServerConfig,
  type TemporalServerPorts,
} from '../../src/stack/temporal-server';
import { operatorSearchAttributeArgs, SEARCH_ATTRIBUTES } from '../../src/temporal/search-attributes';

interface Service {
  image?: string;
  build?: string | { context: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, unknown>;
  entrypoint?: string[];
  volumes?: string[];
  healthcheck?: { test: string[] };
}

const compose = parse(readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
};
const services = compose.services;

/** Substitutes `${VAR}`, `${VAR:-default}` and `${VAR:?message}` as compose would, from `values`. */
function interpolate(value: string, values: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, name: string, op?: string, arg?: string) => {
    if (values[name] !== undefined) return values[name]!;
    if (op === '-') return arg ?? '';
    throw new Error(`compose would stop: ${name} is unset (${arg})`);
  });
}

describe('docker-compose.yml', () => {
  it('gives every service an image or a build, and every build a Dockerfile', () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.image ?? service.build, name).toBeTruthy();
      if (service.build) expect(existsSync(path.join(REPO_ROOT, typeof service.build === 'string' ? service.build : service.build.context, 'Dockerfile'))).toBe(true);
    }
  });

  it('names only services that exist as dependencies, and mounts only files that exist', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const dependency of Object.keys(service.depends_on ?? {})) expect(Object.keys(services), `${name} → ${dependency}`).toContain(dependency);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./')) expect(existsSync(path.join(REPO_ROOT, source)), source).toBe(true);
      }
    }
  });

  it('runs a Temporal server on PostgreSQL with admin-tools schema setup, not auto-setup', () => {
    expect(services.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(services.temporal!.environment!.DB).toBe('postgres12');
    expect(services['temporal-schema']!.image).toMatch(/^temporalio\/admin-tools:/);
    expect(JSON.stringify(compose)).not.toContain('auto-setup');
  });

  it('points the Web UI at the codec server', () => {
    expect(services['temporal-ui']!.environment!.TEMPORAL_CODEC_ENDPOINT).toMatch(/^\$\{CODEC_PUBLIC_URL:-https:\/\/localhost:8888\}$/);
  });

  it('registers every search attribute the code defines', () => {
    const script = services['temporal-search-attributes']!.entrypoint!.join(' ');
    for (const key of Object.values(SEARCH_ATTRIBUTES)) expect(script).toContain(`--name ${key.name} --type ${key.type === 'INT' ? 'Int' : 'Keyword'}`);
  });

  describe('in step with the full Temporal server the suite runs (src/stack/temporal-server.ts)', () => {
    const mountOf = (service: Service, script: string) => service.volumes!.find((v) => v.startsWith(`./${script}:`))?.split(':')[1];

    it('runs the same release: the server and admin-tools images are the pinned temporal-server and temporal-sql-tool', () => {
      expect(SERVERS.temporalServer.version).toBe(SERVERS.temporalSqlTool.version);
      const release = SERVERS.temporalServer.version.replace(/^v/, '');
      expect(services.temporal!.image).toBe(`temporalio/server:${release}`);
      for (const name of ['temporal-schema', 'temporal-search-attributes']) expect(services[name]!.image, name).toBe(`temporalio/admin-tools:${release}`);
    });

    it('sets the schema up with the same script, plugin and variables', () => {
      const schema = services['temporal-schema']!;
      const mounted = mountOf(schema, TEMPORAL_SETUP_SCRIPTS.schema);
      expect(mounted).toBeDefined();
      expect(schema.entrypoint).toEqual(['/bin/sh', mounted]);
      expect(schema.environment!.SQL_PLUGIN).toBe(TEMPORAL_SQL_PLUGIN);
      expect(services.temporal!.environment!.DB).toBe(TEMPORAL_SQL_PLUGIN);
      // The databases it migrates are the ones the server opens.
      expect(schema.environment!.TEMPORAL_DB).toBe(services.temporal!.environment!.DBNAME);
      expect(schema.environment!.TEMPORAL_VISIBILITY_DB).toBe(services.temporal!.environment!.VISIBILITY_DBNAME);
      const local = temporalSchemaEnv({ databaseUrl: 'postgres://u:p@127.0.0.1:5432/x', databases: { persistence: 'a', visibility: 'b' }, sqlTool: '/t', moduleDir: '/m' });
      // Locally only where the image has them built in: the tool and the module's schema folder.
      expect(Object.keys(local).sort()).toEqual([...Object.keys(schema.environment!), 'TEMPORAL_SCHEMA_DIR', 'TEMPORAL_SQL_TOOL'].sort());
      expect(local.SQL_PASSWORD).toBe('p');
      // The image's schema folder is the one the script defaults to; the module's has the same layout.
      expect(readFileSync(path.join(REPO_ROOT, TEMPORAL_SETUP_SCRIPTS.schema), 'utf8')).toContain('${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12');
    });

    it('registers the namespace and the search attributes with the same script, arguments and variables', () => {
      const register = services['temporal-search-attributes']!;
      const mounted = mountOf(register, TEMPORAL_SETUP_SCRIPTS.namespace);
      expect(mounted).toBeDefined();
      expect(register.entrypoint).toEqual(['/bin/sh', mounted, ...operatorSearchAttributeArgs()]);
      const local = temporalNamespaceEnv({ address: '127.0.0.1:1', namespace: 'default', cli: '/c' });
      expect(Object.keys(local).sort()).toEqual([...Object.keys(register.environment!), 'TEMPORAL_CLI'].sort());
      // The namespace the Ledgerlock processes use is the one registered.
      for (const name of ['api', 'worker', 'codec']) expect(services[name]!.environment!.TEMPORAL_NAMESPACE, name).toBe(register.environment!.TEMPORAL_NAMESPACE);
    });

    it('gives the server the history shard count of the config the suite derives from the module', () => {
      const moduleDir = temporalServerModuleDir();
      expect(moduleDir, 'go.temporal.io/server module source missing: run npm run setup').toBeDefined();
      const ports = Object.fromEntries(['frontend', 'frontendMembership', 'http', 'history', 'historyMembership', 'matching', 'matchingMembership', 'worker', 'workerMembership', 'metrics', 'pprof'].map((k, i) => [k, 20_000 + i])) as unknown as TemporalServerPorts;
      const config = temporalServerConfig(readFileSync(path.join(moduleDir!, 'config/development-postgres12.yaml'), 'utf8'), {
        ports,
        postgres: { host: '127.0.0.1', port: 5432, user: 'u', password: 'p' },
        databases: { persistence: 'a', visibility: 'b' },
        dynamicConfigFile: '/d.yaml',
      }) as { persistence: { numHistoryShards: number; datastores: Record<string, { sql: { pluginName: string } }> } };
      expect(String(config.persistence.numHistoryShards)).toBe(services.temporal!.environment!.NUM_HISTORY_SHARDS);
      for (const store of Object.values(config.persistence.datastores)) expect(store.sql.pluginName).toBe(TEMPORAL_SQL_PLUGIN);
      // Every listener of the suite's server on loopback, on the ports given.
      expect(JSON.stringify(config)).not.toMatch(/bindOnLocalHost|0\.0\.0\.0/);
    });
  });

  for (const name of ['migrate', 'api', 'worker', 'codec']) {
    it(`gives the ${name} only variables the config module knows, and they validate in production mode`, () => {
      const service = services[name]!;
      expect(COMMANDS).toContain(service.command![0]);
      const known = new Set<string>([...Object.keys(ENV_DOCS), ...SDK_ENV]);
      for (const variable of Object.keys(service.environment!)) expect(known, variable).toContain(variable);

      const secrets = {
        LEDGERLOCK_OWNER_DB_PASSWORD: 'owner-pw',
        LEDGERLOCK_APP_DB_PASSWORD: 'app-pw',
        STRIPE_SECRET_KEY: 'sk_live_example',
        STRIPE_WEBHOOK_SECRET: 'whsec_exampleexampleexample',
        AWS_REGION: 'eu-central-1',
        AUTH_ISSUER: 'https://idp.example.com/',
        AUTH_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json',
      };
      const env = Object.fromEntries(Object.entries(service.environment!).map(([k, v]) => [k, interpolate(v, secrets)]));
      const config = loadConfig(env, '/app');
      expect(config.mode).toBe('production');
      expect(config.temporal.address).toBe('temporal:7233');
      expect(config.temporal.devServer).toBeUndefined();
      expect(config.kms.local).toBeUndefined();
      expect(config.stripe.mock).toBeUndefined();
      expect(new URL(config.databaseAppUrl).host).toBe('postgresql:5432');
      expect(new URL(config.databaseAppUrl).username).toBe('ledgerlock_app');
      // Only the migrate job knows the owner's URL.
      if (name === 'migrate') expect(new URL(ownerDatabaseUrl(config)).username).toBe('ledgerlock_owner');
      else expect(config.databaseUrl).toBeUndefined();
    });
  }

  it('uses TLS on every hop: mTLS to Temporal for Ledgerlock, the UI and the tools, HTTPS for the API and codec server', () => {
    const temporal = services.temporal!.environment!;
    expect(temporal.TEMPORAL_TLS_REQUIRE_CLIENT_AUTH).toBe('true');
    expect(temporal.TEMPORAL_TLS_FRONTEND_CERT).toMatch(/^\/tls\//);
    expect(temporal.TEMPORAL_TLS_CLIENT1_CA_CERT).toBe('/tls/ca.pem');
    for (const name of ['temporal', 'temporal-search-attributes', 'temporal-ui', 'api', 'worker', 'codec']) {
      expect(services[name]!.volumes, name).toContain('${LEDGERLOCK_TLS_DIR:?set LEDGERLOCK_TLS_DIR}:/tls:ro');
    }
    expect(services['temporal-ui']!.environment).toMatchObject({ TEMPORAL_TLS_CERT: '/tls/client.pem', TEMPORAL_TLS_ENABLE_HOST_VERIFICATION: 'true' });
    expect(readFileSync(path.join(REPO_ROOT, TEMPORAL_SETUP_SCRIPTS.namespace), 'utf8')).toContain('tls="${TLS_FLAGS:-}"');
    expect(services['temporal-search-attributes']!.environment!.TLS_FLAGS).toContain('--tls-cert-path /tls/client.pem');
    expect(services.temporal!.healthcheck?.test.join(' ')).toContain('--tls-cert-path');
    expect(services.api!.healthcheck?.test.join(' ')).toContain('https://localhost:3000/readyz');
    for (const name of ['api', 'worker', 'codec']) {
      const env = services[name]!.environment!;
      expect(env).toMatchObject({ TEMPORAL_TLS_CERT: '/tls/client.pem', TEMPORAL_TLS_KEY: '/tls/client-key.pem', API_TLS_CERT: '/tls/api.pem' });
      expect(env.API_TLS_TERMINATED_BY).toBeUndefined();
    }
  });

  it('gives every job its own PostgreSQL role, and nothing connects as the superuser', () => {
    const superuser = services.postgresql!.environment!.POSTGRES_USER!;
    expect(superuser).toBe('postgres');
    const users: Record<string, string> = {
      'temporal-schema': services['temporal-schema']!.environment!.SQL_USER!,
      temporal: services.temporal!.environment!.POSTGRES_USER!,
      migrate: new URL(services.migrate!.environment!.DATABASE_URL!.replace(/\$\{[^}]+\}/g, 'x')).username,
    };
    for (const name of ['api', 'worker', 'codec']) users[name] = new URL(services[name]!.environment!.DATABASE_APP_URL!.replace(/\$\{[^}]+\}/g, 'x')).username;
    expect(users).toEqual({ 'temporal-schema': 'temporal', temporal: 'temporal', migrate: 'ledgerlock_owner', api: 'ledgerlock_app', worker: 'ledgerlock_app', codec: 'ledgerlock_app' });
    // Each with a password of its own; the superuser's stays with the postgresql service.
    expect(services.temporal!.environment!.POSTGRES_PWD).toContain('TEMPORAL_DB_PASSWORD');
    expect(services.migrate!.environment!.DATABASE_URL).toContain('LEDGERLOCK_OWNER_DB_PASSWORD');
    for (const [name, service] of Object.entries(services)) {
      if (name !== 'postgresql') expect(JSON.stringify(service.environment ?? {}), name).not.toContain('POSTGRES_PASSWORD');
    }
  });

  it('creates the roles once, as LOGIN roles with no privilege of their own, each database owned by its job', () => {
    const init = services.postgresql!.volumes!.find((v) => v.includes('/docker-entrypoint-initdb.d/'))!;
    const file = readFileSync(path.join(REPO_ROOT, init.split(':')[0]!), 'utf8');
    // The SQL psql runs, without comments.
    const script = file.slice(file.indexOf("<<'SQL'")).replace(/^--.*$/gm, '');
    for (const role of ['ledgerlock_owner', 'ledgerlock_app', 'temporal']) {
      const create = script.match(new RegExp(`CREATE ROLE ${role} ([^;]+);`))?.[1];
      expect(create, role).toBeDefined();
      expect(create).toMatch(/^LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'\w+'$/);
    }
    // The application is a member of no role, so it can SET ROLE to none.
    expect(script).not.toMatch(/GRANT\s+\w+\s+TO\s+ledgerlock_app|\bIN\s+(ROLE|GROUP)\b|\bADMIN\b|\bROLE\s+\w+\s+.*\bUSER\s+ledgerlock_app/i);
    expect(script).toContain('CREATE DATABASE ledgerlock OWNER ledgerlock_owner;');
    expect(script).toContain('CREATE DATABASE temporal OWNER temporal;');
    expect(script).toContain('CREATE DATABASE temporal_visibility OWNER temporal;');
    expect(script).toMatch(/REVOKE ALL ON DATABASE ledgerlock, temporal, temporal_visibility FROM PUBLIC;/);
    // Passwords reach psql as variables, never spliced into SQL by the shell.
    expect(script).toMatch(/<<'SQL'/);
  });

  it('keeps the workers\' audit checkpoints on a volume of their own, outside PostgreSQL', () => {
    const dir = services.worker!.environment!.AUDIT_CHECKPOINT_DIR!;
    expect(services.worker!.volumes).toContain(`audit-checkpoints:${dir}`);
    expect(services.postgresql!.volumes!.some((v) => v.startsWith('audit-checkpoints:'))).toBe(false);
    expect(readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8')).toContain(`chown node:node ${dir}`);
  });

  it('runs migrations before anything that uses the database, and serves the codec where the UI looks for it', () => {
    for (const name of ['api', 'worker', 'codec']) expect(services[name]!.depends_on).toHaveProperty('migrate');
    const codecEnv = services.codec!.environment!;
    expect(services.codec!.ports).toEqual([`127.0.0.1:${codecEnv.CODEC_PORT}:${codecEnv.CODEC_PORT}`]);
    expect(services['temporal-ui']!.environment!.TEMPORAL_CODEC_ENDPOINT).toContain(`:${codecEnv.CODEC_PORT}`);
  });

  it('publishes the API on the port the config says it listens on', () => {
    const env = services.api!.environment!;
    expect(services.api!.ports).toEqual([`127.0.0.1:${env.API_PORT}:${env.API_PORT}`]);
    expect(env.API_HOST).toBe('0.0.0.0');
  });

  it('refuses to start without its secrets', () => {
    expect(() => interpolate(services.api!.environment!.STRIPE_SECRET_KEY!, {})).toThrow(/STRIPE_SECRET_KEY is unset/);
  });
});
