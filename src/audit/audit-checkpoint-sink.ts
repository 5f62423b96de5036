import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { publishOnce, readIfExists } from '../local-files';

/**
 * Where signed audit checkpoints go: outside PostgreSQL, so that whoever owns the database
 * cannot rewrite them with the chain. A sink only ever adds: a name is written once and
 * never replaced, and nothing here deletes. In production it must be write-once storage
 * the database owner cannot reach (README: "Audit checkpoints").
 */
export interface CheckpointSink {
  /** Stores `body` under `name` unless that name exists; never replaces what is there. */
  putOnce(name: string, body: string): Promise<'written' | 'exists'>;
  get(name: string): Promise<string | undefined>;
  /** Every stored name, in no particular order. */
  list(): Promise<string[]>;
}

const NAME = /^[0-9]{20}\.json$/;

/**
 * A folder, one file per checkpoint, each created exclusively (link(2) onto the final name
 * fails when it exists) and read-only. Point it at a write-once mount in production.
 */
export class DirectoryCheckpointSink implements CheckpointSink {
  constructor(readonly dir: string) {}

  async putOnce(name: string, body: string): Promise<'written' | 'exists'> {
    assertName(name);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.dir, name);
    // Byte-equal content already there would be the same checkpoint: as good as written.
    return publishOnce(file, body, 0o444) === body ? 'written' : 'exists';
  }

  async get(name: string): Promise<string | undefined> {
    assertName(name);
    return readIfExists(path.join(this.dir, name));
  }

  async list(): Promise<string[]> {
    try {
      // Half-written siblings (`<name>.<pid>.<random>.tmp`) are not checkpoints.
      return readdirSync(this.dir).filter((name) => NAME.test(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

function assertName(name: string): void {
  if (!NAME.test(name)) throw new Error('a checkpoint name is 20 digits and .json');
}
