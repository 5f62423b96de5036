import { spawn, type ChildProcess } from 'node:child_process';
import { LEDGERLOCK_BIN } from '../../src/stack/paths';

/** Variables of the developer's shell that would steer a spawned Ledgerlock elsewhere. */
const INHERITED_OVERRIDES = ['TEMPORAL_ADDRESS', 'TEMPORAL_API_KEY', 'KMS_ENDPOINT', 'STRIPE_API_URL', 'STRIPE_SECRET_KEY', 'AWS_REGION', 'DATABASE_URL', 'DATABASE_APP_URL', 'LEDGERLOCK_MODE'];

export interface SpawnedCli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Resolves once stdout contains `text`; rejects if the process exits first or time runs out. */
  waitFor(text: string, timeoutMs: number): Promise<void>;
}

/** This process's environment without what would steer a spawned Ledgerlock elsewhere, then `env`. */
export function cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const name of INHERITED_OVERRIDES) delete base[name];
  return { ...base, ...env };
}

export function spawnCli(args: string[], env: Record<string, string>): SpawnedCli {
  const child = spawn(process.execPath, [LEDGERLOCK_BIN, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(text, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for "${text}"\nstdout:\n${out}\nstderr:\n${err}`)), timeoutMs);
        const check = () => {
          if (out.includes(text)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout!.on('data', check);
        check();
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`exited with ${code} before "${text}"\nstdout:\n${out}\nstderr:\n${err}`));
        });
      });
    },
  };
}
