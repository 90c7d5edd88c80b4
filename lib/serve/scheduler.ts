// Continuous batching over one model's page pool. Requests wait in a bounded queue; every step
// admits the ones whose prompt fits the free pages (a hybrid prompt's planner peak, P + 1 full
// caches), runs prefill work under a per-step token budget (a prompt's prefill goes on over
// several steps, a chunk through a layer at a time) so a long prompt does not stall the running
// streams, and decodes one token for every sequence whose prompt is in. A finished or
// cancelled sequence gives its pages back at once. When the pool cannot hold a step, the newest
// sequence is preempted (its pages freed, its tokens re-prefilled when it is admitted again), so
// no request is lost and running out of pages is never fatal.
import type { Model } from "../api/model";
import { PoolExhaustedError } from "../cache/page-pool";
import type { FinishReason, GenerateChunk } from "../generate/options";
import { GenerationSequence } from "../generate/sequence";
import { GenerationStepper, type LaunchAhead, type MemberSettings, type StepperMember } from "../generate/stepper";
import type { ResolvedHybrid } from "../hybrid/options";
import { promptPeakPages } from "../hybrid/planner";

export interface SchedulerOptions {
  /** Requests that may wait for admission; beyond it submit() throws QueueFullError. */
  maxQueue: number;
  /**
   * About the tokens one step processes: a decode token per running sequence, the rest prompt
   * tokens through every layer (at least a quarter of it, and at least one prefill chunk through
   * one layer).
   */
  stepTokens: number;
  /** Most sequences running at once. */
  maxRunning: number;
  /** When decode steps are launched ahead (GenerationStepper's LaunchAhead; default "replayed"). */
  launchAhead?: LaunchAhead;
}

/** A request to generate: its prompt ids, its stop rules and sampling, its hybrid options. */
export interface ScheduledRequest {
  ids: readonly number[];
  settings: MemberSettings;
  hybrid: ResolvedHybrid;
  /**
   * Each chunk as it is made (the last one has a finishReason). What it throws ends this request
   * alone, through onError (also after the last chunk); the others go on.
   */
  onChunk(chunk: GenerateChunk): void;
  /**
   * The request failed (its chunks so far stand); it is over. What it throws is reported as a
   * process warning, not to the other requests.
   */
  onError(err: Error): void;
}

/** What a step did, for the metrics. */
export interface SchedulerEvents {
  admitted?(waitedSeconds: number): void;
  preempted?(): void;
  prefilled?(tokens: number): void;
  /**
   * A turn of the loop: its wall time (admission, prefill work, the decode step and its
   * readback: what a decoding stream waits between two tokens), whether it prefilled and whether
   * it decoded.
   */
  stepped?(seconds: number, kind: StepKind): void;
}

/** What a turn of the scheduler's loop ran: prefill work, a decode step, or both. */
export type StepKind = "prefill" | "decode" | "mixed";

/** Thrown by submit() when the queue is full: the HTTP layer answers 429. */
export class QueueFullError extends Error {
  constructor(limit: number) {
    super(`the server's queue is full (${limit} requests waiting); retry later`);
    this.name = "QueueFullError";
  }
}

/** Given to onError of every request still waiting or running when the scheduler closes. */
export class SchedulerClosedError extends Error {
  constructor() {
    super("the server is shutting down: this request was stopped before it finished; send it again to another server");
    this.name = "SchedulerClosedError";
  }
}

/** A submitted request: cancel() ends it, freeing its pages, without another callback. */
export interface Ticket {
  cancel(): void;
}

interface Entry {
  request: ScheduledRequest;
  member?: StepperMember;
  /** When it joined the queue (again, after a preemption). */
  queuedAt: number;
  done: boolean;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The continuous-batching scheduler of one model.
 * @example
 * const scheduler = new Scheduler(model, { maxQueue: 256, stepTokens: 512, maxRunning: 64 });
 * scheduler.submit({ ids, settings, hybrid, onChunk: (c) => process.stdout.write(c.text), onError: console.error });
 */
export class Scheduler {
  private readonly waiting: Entry[] = [];
  private readonly running: Entry[] = [];
  private readonly stepper: GenerationStepper;
  private looping = false;
  private closed = false;

  constructor(
    private readonly model: Model,
    private readonly options: SchedulerOptions,
    private readonly events: SchedulerEvents = {},
  ) {
    this.stepper = new GenerationStepper(model, { releaseSequences: true, launchAhead: options.launchAhead });
  }

  /** Requests waiting for admission. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Sequences admitted (prefilling or decoding). */
  get runningCount(): number {
    return this.running.length;
  }

  /**
   * Pages the running sequences hold, by cache kind (full caches, and rings: lazy layers and sliding windows).
   * @example const { full, ring } = scheduler.pagesByKind();
   */
  pagesByKind(): { full: number; ring: number } {
    const pages = { full: 0, ring: 0 };
    for (const { member } of this.running)
      if (member) for (const c of member.sequence.seq.caches) pages[c.kind === "full" ? "full" : "ring"] += c.pageTable.length;
    return pages;
  }

  /**
   * Most pages a prompt of `tokens` tokens needs while it is prefilled with `hybrid`: what
   * admission waits for (and what a request larger than the whole pool can never get).
   * @example if (scheduler.peakPages(ids.length, hybrid) > model.pool.numPages) reject();
   */
  peakPages(tokens: number, hybrid: ResolvedHybrid): number {
    return promptPeakPages(this.model.config, this.model.pool.pageSize, tokens, hybrid);
  }

  /**
   * Queues a request; throws QueueFullError when the queue is full.
   * @example const ticket = scheduler.submit(request); signal.addEventListener("abort", () => ticket.cancel());
   */
  submit(request: ScheduledRequest): Ticket {
    if (this.closed) throw new SchedulerClosedError();
    if (this.waiting.length >= this.options.maxQueue) throw new QueueFullError(this.options.maxQueue);
    const entry: Entry = { request, queuedAt: performance.now(), done: false };
    this.waiting.push(entry);
    this.wake();
    return { cancel: () => void this.settle(entry) };
  }

  /**
   * Ends every request waiting or running, each through its onError with a SchedulerClosedError
   * (its pages freed first), and admits no more. Calling it again does nothing.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new SchedulerClosedError();
    for (const entry of [...this.waiting, ...this.running]) this.fail(entry, err);
  }

  /** Marks the entry over and drops it; false if it was over already. */
  private settle(entry: Entry): boolean {
    if (entry.done) return false;
    entry.done = true;
    this.drop(entry);
    return true;
  }

  /** Takes an entry out of the queue or the batch, freeing its pages. */
  private drop(entry: Entry): void {
    const waitingAt = this.waiting.indexOf(entry);
    if (waitingAt >= 0) this.waiting.splice(waitingAt, 1);
    const runningAt = this.running.indexOf(entry);
    if (runningAt >= 0) this.running.splice(runningAt, 1);
    if (entry.member) this.stepper.remove(entry.member);
    entry.member?.sequence.dispose();
  }

  /** Starts the loop on a later turn: submit() returns first, and requests arriving together are admitted together. */
  private wake(): void {
    if (this.looping) return;
    this.looping = true;
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && (this.waiting.length || this.running.length)) {
        try {
          const start = performance.now();
          this.admit();
          const prefilled = this.prefillWork();
          const decoded = this.decode();
          if (prefilled || decoded)
            this.events.stepped?.((performance.now() - start) / 1000, prefilled ? (decoded ? "mixed" : "prefill") : "decode");
        } catch (err) {
          // A fault outside any one request (a device error): the batch fails, the server goes on.
          for (const entry of [...this.running]) this.fail(entry, err as Error);
        }
        await yieldToEventLoop();
      }
    } finally {
      this.looping = false;
    }
  }

  /** Admits waiting requests in order while the head fits the free pages left after what the batch still needs. */
  private admit(): void {
    const pool = this.model.pool;
    let free = pool.freePages - this.reservedPages();
    while (this.waiting.length && this.running.length < this.options.maxRunning) {
      const entry = this.waiting[0];
      const tokens = entry.member ? entry.member.pending.length : entry.request.ids.length;
      const need = this.peakPages(tokens, entry.request.hybrid);
      // An empty batch takes its head whatever it needs: prefill then fails with the pool's own error.
      if (need > free && this.running.length) break;
      this.waiting.shift();
      try {
        if (entry.member) this.stepper.readmit(entry.member);
        else
          entry.member = this.stepper.admit(
            new GenerationSequence(this.model.decoder, entry.request.hybrid),
            entry.request.ids,
            entry.request.settings,
          );
      } catch (err) {
        this.fail(entry, err as Error);
        continue;
      }
      this.running.push(entry);
      this.events.admitted?.((performance.now() - entry.queuedAt) / 1000);
      free -= need;
    }
  }

  /**
   * Pages the batch still needs beyond what it holds: the rest of each prefilling prompt's peak,
   * and one decode step's growth for the others.
   */
  private reservedPages(): number {
    let reserved = 0;
    for (const { member, request } of this.running) {
      if (!member) continue;
      const caches = member.sequence.seq.caches;
      if (member.prefilling) {
        const held = caches.reduce((sum, c) => sum + c.pageTable.length, 0);
        reserved += Math.max(0, this.peakPages(member.sequence.length + member.pending.length, request.hybrid) - held);
      } else for (const c of caches) reserved += c.pageCountAfter(1) - c.pageTable.length;
    }
    return reserved;
  }

  /**
   * Prefill work for the prefilling sequences, oldest first, within what the step's token budget
   * leaves (a token of budget is one token through every layer; a prompt's prefill goes on over
   * as many steps as it needs, a chunk through a layer at a time). Returns whether any ran.
   */
  private prefillWork(): boolean {
    let any = false;
    const decoding = this.running.filter((e) => e.member && !e.member.prefilling).length;
    // A step always makes some prompt progress, so a full batch cannot starve the queue.
    let work = Math.max(this.options.stepTokens - decoding, Math.ceil(this.options.stepTokens / 4)) * this.model.config.layers;
    for (const entry of [...this.running]) {
      const member = entry.member!;
      if (!member.running || !member.prefilling) continue;
      if (work <= 0) break;
      const tokens = member.pending.length;
      let done: { work: number; chunk?: GenerateChunk };
      try {
        done = this.stepper.prefill(member, work);
      } catch (err) {
        // The running streams come first: a prompt the pool cannot hold now waits at the queue's front.
        if (err instanceof PoolExhaustedError && this.running.length > 1) this.requeue(entry);
        // A preempted sequence that cannot be re-prefilled even alone ends with what it generated.
        else if (err instanceof PoolExhaustedError && member.generated > 0) this.end(entry, "context");
        else this.fail(entry, err as Error);
        continue;
      }
      work -= done.work;
      any = true;
      if (!member.prefilling) this.events.prefilled?.(tokens);
      if (done.chunk) this.deliver(entry, done.chunk);
    }
    return any;
  }

  /**
   * One decode step for the sequences whose prompt is in. While the pool cannot hold the step,
   * the newest sequence is preempted; a sequence alone that cannot grow ends where it is.
   * Returns whether a step ran.
   */
  private decode(): boolean {
    for (;;) {
      let chunks: Array<{ member: StepperMember; chunk: GenerateChunk }>;
      try {
        chunks = this.stepper.step();
      } catch (err) {
        if (!(err instanceof PoolExhaustedError)) throw err;
        if (this.running.length > 1) {
          this.requeue(this.running[this.running.length - 1]);
          continue;
        }
        for (const entry of [...this.running]) this.end(entry, "context");
        return false;
      }
      for (const { member, chunk } of chunks) {
        const entry = this.running.find((e) => e.member === member);
        if (entry) this.deliver(entry, chunk);
      }
      return chunks.length > 0;
    }
  }

  /** Preempts a running sequence: its pages are freed and it waits at the front of the queue. */
  private requeue(entry: Entry): void {
    this.running.splice(this.running.indexOf(entry), 1);
    this.stepper.preempt(entry.member!);
    entry.queuedAt = performance.now();
    this.waiting.unshift(entry);
    this.events.preempted?.();
  }

  private deliver(entry: Entry, chunk: GenerateChunk): void {
    if (chunk.finishReason) this.settle(entry);
    try {
      entry.request.onChunk(chunk);
    } catch (err) {
      // A fault in one request's own callback: that request ends, the batch goes on.
      this.settle(entry);
      this.reportError(entry, err as Error);
    }
  }

  private end(entry: Entry, reason: FinishReason): void {
    const chunk = this.stepper.finish(entry.member!, reason);
    this.deliver(entry, chunk);
  }

  private fail(entry: Entry, err: Error): void {
    if (this.settle(entry)) this.reportError(entry, err);
  }

  /** Calls the request's onError; a throw from it would otherwise fail every other request, or leave the loop. */
  private reportError(entry: Entry, err: Error): void {
    try {
      entry.request.onError(err);
    } catch (callbackErr) {
      process.emitWarning(callbackErr as Error);
    }
  }
}
