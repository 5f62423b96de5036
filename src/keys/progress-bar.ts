import type { RotationStatus } from './key-rotation-service';
import { GRACE_PERIOD_STAGE } from '../../workflows/key-rotation-contracts';

/**
 * One line of a rotation's progress: re-wrapping and verification each count for half the
 * bar, over all regions' data keys.
 */
export function progressLine(status: RotationStatus, width = 30): string {
  const total = Math.max(status.totalKeys, 1);
  const done = status.status === 'completed' || status.stage === GRACE_PERIOD_STAGE ? 1 : Math.min(1, (status.rewrappedKeys + status.verifiedKeys) / (2 * total));
  const filled = Math.round(done * width);
  const percent = `${Math.floor(done * 100)}%`.padStart(4);
  const counts = status.totalKeys > 0 ? ` (${status.rewrappedKeys}/${status.totalKeys} re-wrapped, ${status.verifiedKeys} verified)` : '';
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent} ${status.stage}${counts}`;
}
