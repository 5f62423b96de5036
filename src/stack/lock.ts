import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
  constructor(readonly pid: number, readonly lockFile: string) {
    super(`Ledgerlock is already running (pid ${pid}, lock ${lockFile}); stop it first, or use another LEDGERLOCK_DATA_DIR`);
  }
}

/**
 * Takes the data folder's lock so that a second `npm start` on the same data refuses to
 * run instead of fighting over ports and the SQLite file. A lock left by a process that
 * died is taken over.
 *
 * @returns a function that releases the lock.
 */
export function acquireLock(dataDir: string, name = 'ledgerlock.pid'): () => void {
  mkdirSync(dataDir, { recursive: true });
  const lockFile = path.join(dataDir, name);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        // Only remove our own lock, not one a later process took over.
        if (readPid(lockFile) === process.pid) rmSync(lockFile, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readPid(lockFile);
      if (holder !== undefined && holder !== process.pid && isAlive(holder)) throw new AlreadyRunningError(holder, lockFile);
      rmSync(lockFile, { force: true });
    }
  }
  throw new Error(`could not take the lock ${lockFile}`);
}

function readPid(lockFile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(lockFile, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
