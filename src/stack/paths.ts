import path from 'node:path';

/** The repository root, wherever the process was started from. */
export const REPO_ROOT = path.resolve(__dirname, '../..');

/** The `ledgerlock` command line, runnable with `node`. */
export const LEDGERLOCK_BIN = path.join(REPO_ROOT, 'bin', 'ledgerlock.js');
