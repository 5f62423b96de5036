import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SetupError, temporalServerModuleDir } from '../../src/stack/servers';
import { temporalDatabaseNames, temporalDynamicConfig, temporalServerConfig, temporalServerTools, type TemporalServerPorts } from '../../src/stack/temporal-server';

const moduleDir = temporalServerModuleDir();
const read = (file: string) => readFileSync(path.join(moduleDir!, file), 'utf8');
const ports: TemporalServerPorts = {
  frontend: 11001,
  frontendMembership: 11002,
  http: 41003,
  history: 11004,
  historyMembership: 11005,
  matching: 11006,
  matchingMembership: 11007,
  worker: 11008,
  workerMembership: 11009,
  metrics: 41010,
  pprof: 41011,
};

describe('the full Temporal server setup (src/stack/temporal-server.ts)', () => {
  it('fails naming npm run setup when a binary is missing, and never builds one', () => {
    expect(() => temporalServerTools('/nonexistent-tools')).toThrow(SetupError);
    expect(() => temporalServerTools('/nonexistent-tools')).toThrow(/npm run setup/);
  });

  it('derives its config from the module\'s development-postgres12.yaml: our databases, 127.0.0.1 and the ports given, everywhere', () => {
    expect(moduleDir, 'go.temporal.io/server module source missing: run npm run setup').toBeDefined();
    const template = read('config/development-postgres12.yaml');
    const config = temporalServerConfig(template, {
      ports,
      postgres: { host: '127.0.0.1', port: 5432, user: 'u', password: 'secret' },
      databases: temporalDatabaseNames('Ledger-Lock'),
      dynamicConfigFile: '/tmp/dc.yaml',
    }) as any;
    const stores = config.persistence.datastores;
    expect(stores['postgres-default'].sql).toMatchObject({ pluginName: 'postgres12', databaseName: 'temporal_ledger_lock', connectAddr: '127.0.0.1:5432', user: 'u', password: 'secret' });
    expect(stores['postgres-visibility'].sql.databaseName).toBe('temporal_visibility_ledger_lock');
    for (const [name, grpc, membership] of [
      ['frontend', ports.frontend, ports.frontendMembership],
      ['history', ports.history, ports.historyMembership],
      ['matching', ports.matching, ports.matchingMembership],
      ['worker', ports.worker, ports.workerMembership],
    ] as const) {
      expect(config.services[name].rpc, name).toMatchObject({ grpcPort: grpc, membershipPort: membership, bindOnIP: '127.0.0.1' });
      expect(config.services[name].rpc.bindOnLocalHost).toBeUndefined();
    }
    expect(config.services.frontend.rpc.httpPort).toBe(ports.http);
    expect(config.global.metrics.prometheus.listenAddress).toBe(`127.0.0.1:${ports.metrics}`);
    expect(config.global.pprof.port).toBe(ports.pprof);
    expect(config.clusterMetadata.clusterInformation.active.rpcAddress).toBe(`127.0.0.1:${ports.frontend}`);
    expect(config.dynamicConfigClient.filepath).toBe('/tmp/dc.yaml');
    // Everything else is the module's own: the same shape as the template.
    expect(Object.keys(config).sort()).toEqual(Object.keys(parse(template)).sort());
  });

  it('keeps the module\'s dynamic config and makes new search attributes visible at once, as the dev server does', () => {
    const dynamic = temporalDynamicConfig(read('config/dynamicconfig/development-sql.yaml'), ports.http) as Record<string, { value: unknown }[]>;
    expect(dynamic['system.forceSearchAttributesCacheRefreshOnRead']![0]!.value).toBe(true);
    expect(dynamic['limit.maxIDLength']![0]!.value).toBe(255);
    expect(String(dynamic['component.nexusoperations.callback.endpoint.template']![0]!.value)).toContain(`127.0.0.1:${ports.http}`);
  });
});
