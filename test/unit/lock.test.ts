import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireLock, AlreadyRunningError } from '../../src/stack/lock';

describe('acquireLock', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-lock-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('writes our pid and removes the lock on release', () => {
    const dir = tempDir();
    const release = acquireLock(dir);
    expect(readFileSync(path.join(dir, 'ledgerlock.pid'), 'utf8').trim()).toBe(String(process.pid));
    release();
    expect(existsSync(path.join(dir, 'ledgerlock.pid'))).toBe(false);
  });

  it('refuses while another live process holds it', async () => {
    const dir = tempDir();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(path.join(dir, 'ledgerlock.pid'), `${holder.pid}\n`);
      expect(() => acquireLock(dir)).toThrow(AlreadyRunningError);
      expect(() => acquireLock(dir)).toThrow(`already running (pid ${holder.pid}`);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('takes over a lock left by a process that died', async () => {
    const dir = tempDir();
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    writeFileSync(path.join(dir, 'ledgerlock.pid'), `${dead.pid}\n`);
    const release = acquireLock(dir);
    expect(readFileSync(path.join(dir, 'ledgerlock.pid'), 'utf8').trim()).toBe(String(process.pid));
    release();
  });
});
