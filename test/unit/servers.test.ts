import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureServers, GO_MISSING_MESSAGE, SERVERS, serverPath, SetupError } from '../../src/stack/servers';

describe('ensureServers (npm run setup)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-tools-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('stops with what to install when Go is missing and nothing overrides a server', async () => {
    const noGo = { PATH: tempDir() };
    const error = await ensureServers(tempDir(), { env: noGo, print: () => undefined }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SetupError);
    expect((error as Error).message).toBe(GO_MISSING_MESSAGE);
    expect(GO_MISSING_MESSAGE).toMatch(/Install Go 1\.23 or newer/);
    expect(GO_MISSING_MESSAGE).toContain('TEMPORAL_CLI_PATH');
  });

  it('builds nothing for an overridden server, and uses the override', async () => {
    const bin = tempDir();
    const env: NodeJS.ProcessEnv = { PATH: tempDir() };
    for (const server of Object.values(SERVERS)) {
      const file = path.join(bin, server.binary);
      writeFileSync(file, '#!/bin/sh\n');
      chmodSync(file, 0o755);
      env[server.overrideEnv] = file;
    }
    // The full server's schema and config come from its module source, whoever built the binary.
    await expect(ensureServers(tempDir(), { env })).rejects.toThrow(GO_MISSING_MESSAGE);
    env.TEMPORAL_SERVER_MODULE_DIR = tempDir();
    const printed: string[] = [];
    const paths = await ensureServers(tempDir(), { env, print: (line) => printed.push(line) });
    expect(printed).toEqual([]);
    expect(paths.temporal).toBe(path.join(bin, 'temporal'));
  });

  it('refuses an override that points nowhere', async () => {
    const env = { PATH: tempDir(), TEMPORAL_CLI_PATH: '/nonexistent/temporal' };
    await expect(ensureServers(tempDir(), { env, only: ['temporal'] })).rejects.toThrow('TEMPORAL_CLI_PATH=/nonexistent/temporal: no such file');
  });

  it('skips a server already built at the pinned version, and rebuilds one of another version', async () => {
    const tools = tempDir();
    mkdirSync(path.join(tools, 'bin'));
    const { binary, module, version } = SERVERS.stripeMock;
    writeFileSync(path.join(tools, 'bin', binary), '');
    writeFileSync(path.join(tools, 'bin', `${binary}.version`), `${module}@${version}\n`);
    const noGo = { PATH: tempDir() };
    await expect(ensureServers(tools, { env: noGo, only: ['stripeMock'] })).resolves.toMatchObject({ stripeMock: serverPath('stripeMock', tools, noGo) });

    writeFileSync(path.join(tools, 'bin', `${binary}.version`), `${module}@v0.0.1\n`);
    // A stale build needs Go again, which this PATH lacks.
    await expect(ensureServers(tools, { env: noGo, only: ['stripeMock'] })).rejects.toThrow(SetupError);
  });

  it('waits while another setup holds the tools folder, and then builds nothing it has built meanwhile', async () => {
    const tools = tempDir();
    mkdirSync(path.join(tools, 'bin'));
    // A fake `go` that only answers `go version`: reaching `go install` would fail the test.
    const goBin = tempDir();
    writeFileSync(path.join(goBin, 'go'), '#!/bin/sh\n[ "$1" = version ] && exit 0\nexit 3\n');
    chmodSync(path.join(goBin, 'go'), 0o755);
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(tools, 'setup.pid'), `${other.pid}\n`);
      const printed: string[] = [];
      const setup = ensureServers(tools, { env: { PATH: `${goBin}:/usr/bin:/bin` }, only: ['stripeMock'], print: (line) => printed.push(line) });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(printed).toEqual([expect.stringMatching(new RegExp(`^waiting for another setup \\(pid ${other.pid}\\)`))]);
      // The other setup finishes stripe-mock and lets go.
      const { binary, module, version } = SERVERS.stripeMock;
      writeFileSync(path.join(tools, 'bin', binary), '');
      writeFileSync(path.join(tools, 'bin', `${binary}.version`), `${module}@${version}\n`);
      other.kill();
      await expect(setup).resolves.toMatchObject({ stripeMock: path.join(tools, 'bin', binary) });
      expect(printed).toHaveLength(1);
      expect(existsSync(path.join(tools, 'setup.pid'))).toBe(false);
    } finally {
      other.kill();
    }
  });
});

