import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { acquireLock, AlreadyRunningError } from './lock';

/**
 * The external servers of the local stack, pinned. Each is built with `go install` into
 * the git-ignored tools folder, or taken from an environment variable that points at an
 * existing binary.
 *
 * `temporalServer` and `temporalSqlTool` are the production Temporal server and its schema
 * tool, at the release the pinned CLI embeds; the dev server stays the default topology.
 * `promtool` checks deploy/prometheus/alerts.yml in the tests; nothing runs it at start.
 */
export const SERVERS = {
  temporal: {
    binary: 'temporal',
    module: 'github.com/temporalio/cli/cmd/temporal',
    // Later tags carry a `replace` directive and cannot be go-installed.
    version: 'v1.5.1',
    overrideEnv: 'TEMPORAL_CLI_PATH',
  },
  stripeMock: {
    binary: 'stripe-mock',
    module: 'github.com/stripe/stripe-mock',
    version: 'v0.197.0',
    overrideEnv: 'STRIPE_MOCK_PATH',
  },
  localKms: {
    binary: 'local-kms',
    module: 'github.com/nsmithuk/local-kms',
    version: 'v0.0.0-20260228092603-2a5e92d09ab6',
    overrideEnv: 'LOCAL_KMS_PATH',
  },
  temporalServer: {
    binary: 'temporal-server',
    module: 'go.temporal.io/server/cmd/server',
    // The release CLI v1.5.1 embeds, so the dev server and the full server agree.
    version: 'v1.29.1',
    overrideEnv: 'TEMPORAL_SERVER_PATH',
  },
  temporalSqlTool: {
    binary: 'temporal-sql-tool',
    module: 'go.temporal.io/server/cmd/tools/sql',
    version: 'v1.29.1',
    overrideEnv: 'TEMPORAL_SQL_TOOL_PATH',
  },
  promtool: {
    binary: 'promtool',
    module: 'github.com/prometheus/prometheus/cmd/promtool',
    // Prometheus v3 tags its Go module v0.3xx: this is the newest the module proxy serves (Prometheus 3.16).
    version: 'v0.316.0',
    overrideEnv: 'PROMTOOL_PATH',
  },
} as const;

export type ServerName = keyof typeof SERVERS;

export class SetupError extends Error {
  override name = 'SetupError';
}

/** Where a server's binary is: the override if set, else the pinned build in `toolsDir`. */
export function serverPath(name: ServerName, toolsDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[SERVERS[name].overrideEnv];
  if (override) return path.resolve(override);
  return path.join(toolsDir, 'bin', SERVERS[name].binary);
}

function stampPath(name: ServerName, toolsDir: string): string {
  return path.join(toolsDir, 'bin', `${SERVERS[name].binary}.version`);
}

function isBuilt(name: ServerName, toolsDir: string): boolean {
  const stamp = stampPath(name, toolsDir);
  return (
    existsSync(path.join(toolsDir, 'bin', SERVERS[name].binary)) &&
    existsSync(stamp) &&
    readFileSync(stamp, 'utf8').trim() === `${SERVERS[name].module}@${SERVERS[name].version}`
  );
}

export const GO_MISSING_MESSAGE = [
  'Go is needed to build the pinned local servers (Temporal CLI and server, stripe-mock, local-kms, promtool), and `go` is not on PATH.',
  'Install Go 1.23 or newer and make sure `go version` works, then run `npm run setup` again.',
  'Or point at binaries you already have: TEMPORAL_CLI_PATH, STRIPE_MOCK_PATH, LOCAL_KMS_PATH, TEMPORAL_SERVER_PATH, TEMPORAL_SQL_TOOL_PATH, PROMTOOL_PATH.',
].join('\n');

/**
 * Builds every pinned server that is missing or of another version, one at a time (each
 * build uses every core). Prints what it builds; skips what is built or overridden.
 *
 * @throws SetupError when Go is missing and a server has no override, or a build fails.
 */
export async function ensureServers(
  toolsDir: string,
  options: { env?: NodeJS.ProcessEnv; only?: readonly ServerName[]; print?: (line: string) => void } = {},
): Promise<Record<ServerName, string>> {
  const env = options.env ?? process.env;
  const print = options.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const names = options.only ?? (Object.keys(SERVERS) as ServerName[]);
  const paths = {} as Record<ServerName, string>;
  for (const name of Object.keys(SERVERS) as ServerName[]) paths[name] = serverPath(name, toolsDir, env);

  let release: (() => void) | undefined;
  try {
    for (const name of names) await ensure(name);
  } finally {
    release?.();
  }
  return paths;

  async function ensure(name: ServerName): Promise<void> {
    const server = SERVERS[name];
    // Its schema and config come from the module source, whoever built the binary.
    if (name === 'temporalServer') await ensureTemporalServerModule(env, print);
    const override = env[server.overrideEnv];
    if (override) {
      if (!existsSync(override)) throw new SetupError(`${server.overrideEnv}=${override}: no such file`);
      return;
    }
    if (isBuilt(name, toolsDir)) return;
    if (!goAvailable(env)) throw new SetupError(GO_MISSING_MESSAGE);
    // Another setup (a second checkout's test run, say) may be building into the same folder: one at a time.
    release ??= await takeToolsLock(toolsDir, print);
    if (isBuilt(name, toolsDir)) return;
    print(`building ${server.binary} ${server.version} (go install ${server.module}@${server.version}) ...`);
    mkdirSync(path.join(toolsDir, 'bin'), { recursive: true });
    await goInstall(`${server.module}@${server.version}`, path.join(toolsDir, 'bin'), env);
    // `go install` names the binary after the package's last path element.
    const built = path.join(toolsDir, 'bin', path.basename(server.module));
    if (built !== path.join(toolsDir, 'bin', server.binary)) renameSync(built, path.join(toolsDir, 'bin', server.binary));
    writeFileSync(stampPath(name, toolsDir), `${server.module}@${server.version}\n`);
    print(`built ${paths[name]}`);
  }
}

/** Waits for the tools folder's build lock (held by another setup while it builds), then takes it. */
async function takeToolsLock(toolsDir: string, print: (line: string) => void): Promise<() => void> {
  for (let said = false; ; ) {
    try {
      return acquireLock(toolsDir, 'setup.pid');
    } catch (err) {
      if (!(err instanceof AlreadyRunningError)) throw err;
      if (!said) print(`waiting for another setup (pid ${err.pid}) to finish building into ${toolsDir} ...`);
      said = true;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}

/** The Go module whose schema and config the full Temporal server is set up from: the server's own release. */
export const TEMPORAL_SERVER_MODULE = { path: 'go.temporal.io/server', version: SERVERS.temporalServer.version } as const;

/**
 * Where the Go module cache holds the Temporal server's module source (its `schema/` and
 * `config/` folders), or undefined when it is not there. Reads the cache only: no download.
 */
export function temporalServerModuleDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const override = env.TEMPORAL_SERVER_MODULE_DIR;
  if (override) return existsSync(override) ? path.resolve(override) : undefined;
  const cache = spawnSync('go', ['env', 'GOMODCACHE'], { env, encoding: 'utf8' });
  if (cache.status !== 0) return undefined;
  // The module cache escapes capitals as `!x`; this path has none.
  const dir = path.join(cache.stdout.trim(), `${TEMPORAL_SERVER_MODULE.path}@${TEMPORAL_SERVER_MODULE.version}`);
  return existsSync(path.join(dir, 'schema')) ? dir : undefined;
}

/** `go mod download`s the Temporal server's module source if the cache lacks it (setup only). */
async function ensureTemporalServerModule(env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<void> {
  if (temporalServerModuleDir(env)) return;
  if (!goAvailable(env)) throw new SetupError(GO_MISSING_MESSAGE);
  const target = `${TEMPORAL_SERVER_MODULE.path}@${TEMPORAL_SERVER_MODULE.version}`;
  print(`downloading ${target} (its schema and config) ...`);
  const result = spawnSync('go', ['mod', 'download', target], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0 || !temporalServerModuleDir(env)) throw new SetupError(`go mod download ${target} failed with exit code ${result.status}`);
}

function goAvailable(env: NodeJS.ProcessEnv): boolean {
  return spawnSync('go', ['version'], { env, stdio: 'ignore' }).status === 0;
}

function goInstall(target: string, gobin: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    // Pure-Go builds: the Temporal CLI's SQLite is modernc.org/sqlite, no C toolchain needed.
    const child = spawn('go', ['install', target], {
      env: { ...env, GOBIN: gobin, CGO_ENABLED: '0', GOFLAGS: '-trimpath' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', (err) => reject(new SetupError(`go install ${target}: ${err.message}`)));
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new SetupError(`go install ${target} failed with exit code ${code}`)),
    );
  });
}
