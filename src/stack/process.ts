import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** A server the stack started, its output going to a log file under the data folder. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves when the process has exited, for whatever reason. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  readonly name: string;
  readonly command: string;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly logDir: string;
}

export function spawnServer(options: SpawnOptions): ManagedProcess {
  mkdirSync(options.logDir, { recursive: true });
  const logFile = path.join(options.logDir, `${options.name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child: ChildProcess = spawn(options.command, options.args ?? [], {
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      log.write(`failed to start ${options.command}: ${err.message}\n`);
      resolve(null);
    });
    child.on('exit', (code, signal) => {
      log.end(`${options.name} exited (code ${code}, signal ${signal})\n`);
      resolve(code);
    });
  });
  let alive = true;
  void exited.then(() => (alive = false));
  return {
    name: options.name,
    pid: child.pid ?? -1,
    logFile,
    exited,
    async stop(graceMs = 5_000) {
      if (!alive) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The last lines of a log file, to say why a server did not come up. */
export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

export class StartupError extends Error {
  override name = 'StartupError';
}

/**
 * Polls `probe` until it succeeds. Fails at once if `process` exits first, and after
 * `timeoutMs` otherwise, with the end of the server's log in the message.
 */
export async function waitUntilReady(
  process: ManagedProcess,
  probe: () => Promise<unknown>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void process.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new StartupError(`${process.name} exited during start-up; end of ${process.logFile}:\n${tail(process.logFile)}`);
    try {
      await probe();
      return;
    } catch {
      if (Date.now() > deadline) {
        throw new StartupError(`${process.name} not ready after ${timeoutMs} ms; end of ${process.logFile}:\n${tail(process.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Resolves when a TCP connection to host:port succeeds, rejects otherwise. */
export function tcpProbe(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(timeoutMs);
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error('timeout'));
    });
    socket.once('error', reject);
  });
}

/** True when nothing can be listening on host:port because we could bind it ourselves. */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS says is free right now. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ port: 0, host }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
