/**
 * In-process notice that a scan has finished, so a client waiting for a verdict (CSS
 * synchronous scans, the SMTP gateway's reject-at-SMTP-time) answers the moment a worker of
 * this process stores the result. Waiters still re-read the store on a backoff: a worker in
 * another process finishes scans without telling this one.
 */
export class ScanEvents {
  private readonly waiting = new Map<number, Set<() => void>>();

  /** Wakes everyone waiting on this scan. */
  finished(scanId: number): void {
    const set = this.waiting.get(scanId);
    if (!set) return;
    this.waiting.delete(scanId);
    for (const wake of set) wake();
  }

  /**
   * Resolves when `finished(scanId)` is called or after `ms`, whichever is first. Call it
   * before reading the scan's status, then await it: a finish between the read and the wait
   * is not missed.
   */
  next(scanId: number, ms: number): { wait: Promise<void>; cancel(): void } {
    let set = this.waiting.get(scanId);
    if (!set) this.waiting.set(scanId, (set = new Set()));
    let timer: NodeJS.Timeout | undefined;
    let wake!: () => void;
    const wait = new Promise<void>((resolve) => {
      wake = () => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.waiting.get(scanId) === set) this.waiting.delete(scanId);
        resolve();
      };
    });
    set.add(wake);
    timer = setTimeout(wake, ms);
    return { wait, cancel: wake };
  }
}
