import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';

/**
 * Writing the data folder's secrets (local mode) so that no reader ever sees half a file
 * and two processes starting at once agree on one value.
 */

/**
 * Publishes `content` at `file` unless the file exists, and returns what the file holds
 * afterwards: ours, or the content of the process that published first. link(2) fails
 * when the target exists, so exactly one writer wins.
 */
export function publishOnce(file: string, content: string, mode: number): string {
  const temp = writeTemp(file, content, mode);
  try {
    linkSync(temp, file);
    return content;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readFileSync(file, 'utf8');
  } finally {
    rmSync(temp, { force: true });
  }
}

/** Replaces `file` with `content` in one rename. */
export function writeAtomically(file: string, content: string, mode: number): void {
  const temp = writeTemp(file, content, mode);
  try {
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/** The file's content, or undefined when it does not exist. */
export function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes and fsyncs a uniquely named sibling. */
function writeTemp(file: string, content: string, mode: number): string {
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(temp, 'wx', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return temp;
}
