import { ApplicationFailure, CancellationScope, log } from '@temporalio/workflow';

/**
 * Compensations of a saga: each registered before its step runs, run last-in-first-out.
 * A compensation that still fails after its activity retries does not stop the others,
 * and is never swallowed: once all have run, the workflow fails with it as the cause.
 */
export class Saga {
  private readonly compensations: { readonly name: string; readonly run: () => Promise<unknown> }[] = [];

  /** Registers the undo of the step about to run. */
  onRollback(name: string, run: () => Promise<unknown>): void {
    this.compensations.push({ name, run });
  }

  /** The compensations registered so far, in the order they would run. */
  get pending(): string[] {
    return this.compensations.map((c) => c.name).reverse();
  }

  /** Runs even while the workflow itself is being cancelled: what was done must be undone. */
  compensate(): Promise<void> {
    return CancellationScope.nonCancellable(() => this.runCompensations());
  }

  private async runCompensations(): Promise<void> {
    const failed: { name: string; error: unknown }[] = [];
    while (this.compensations.length > 0) {
      const { name, run } = this.compensations.pop()!;
      try {
        await run();
      } catch (error) {
        log.error('compensation failed', { compensation: name });
        failed.push({ name, error });
      }
    }
    if (failed.length > 0) {
      throw ApplicationFailure.create({
        type: 'CompensationFailed',
        nonRetryable: true,
        message: `compensation failed: ${failed.map((f) => f.name).join(', ')}`,
        cause: failed[0]!.error instanceof Error ? failed[0]!.error : undefined,
        details: [failed.map((f) => f.name)],
      });
    }
  }
}
