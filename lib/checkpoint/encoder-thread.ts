// Encoding text on a worker thread. The tokenizer is plain JavaScript and takes seconds over a
// megabyte of text; on the main thread that would stall every other stream of a server and every
// timer of the program for as long.
import { Worker } from "node:worker_threads";

/**
 * The worker's own source: it builds the same tokenizer from the same files' text and answers
 * each request with the ids, moved (not copied) back in an Int32Array.
 */
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const { Tokenizer } = require(workerData.modulePath);
const tokenizer = new Tokenizer(JSON.parse(workerData.json), JSON.parse(workerData.config));
parentPort.postMessage({ ready: true });
parentPort.on("message", ({ id, text, addSpecialTokens }) => {
  try {
    const ids = Int32Array.from(tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids);
    parentPort.postMessage({ id, ids }, [ids.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
`;

/**
 * The worker thread failed or was ended, rather than the text: the encoding did not happen.
 * @example if (err instanceof EncoderThreadError) reply.code(500);
 */
export class EncoderThreadError extends Error {
  override readonly name = "EncoderThreadError";
}

interface Pending {
  worker: Worker;
  resolve: (ids: number[]) => void;
  reject: (err: Error) => void;
}

/**
 * One worker thread encoding for one tokenizer, started at the first request. It keeps the
 * process alive only while a request is pending, as a socket or a timer would.
 * @example
 * const thread = new EncoderThread(tokenizerJsonText, tokenizerConfigText);
 * const ids = await thread.encode(longText, true);
 * await thread.close();
 */
export class EncoderThread {
  private worker?: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  closed = false;
  /**
   * Why no worker can start here (the permission model refuses it, or a bundle left the
   * tokenizer's module out), once one has failed before it was ready; the caller encodes inline.
   */
  unavailable: string | undefined;

  constructor(
    private readonly json: string,
    private readonly config: string,
  ) {}

  /**
   * Token ids of `text`, encoded on the worker thread.
   * @example const ids = await thread.encode(text, false);
   */
  encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    this.checkOpen();
    this.worker ??= this.start();
    const worker = this.worker;
    const id = this.nextId++;
    if (this.pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { worker, resolve, reject });
      worker.postMessage({ id, text, addSpecialTokens });
    });
  }

  /**
   * Throws once the thread is closed.
   * @example thread.checkOpen(); // before encoding a short text inline
   */
  checkOpen(): void {
    if (this.closed) throw new Error("encodeAsync: this tokenizer was disposed (with its model); use encode(), or load the model again");
  }

  /**
   * Ends the worker; requests still pending are rejected.
   * @example await thread.close();
   */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    this.fail(new EncoderThreadError("encodeAsync: the tokenizer was disposed (with its model) before the text was encoded"));
    await worker?.terminate();
  }

  private start(): Worker {
    let worker: Worker;
    try {
      worker = new Worker(workerSource, {
        eval: true,
        workerData: { modulePath: require.resolve("@huggingface/tokenizers"), json: this.json, config: this.config },
      });
    } catch (err) {
      this.unavailable = (err as Error).message;
      throw new EncoderThreadError(`the tokenizer's worker thread could not start (${this.unavailable})`);
    }
    worker.unref();
    let ready = false;
    worker.on("message", (message: { id: number; ids?: Int32Array; error?: string; ready?: boolean }) => {
      if (message.ready) {
        ready = true;
        return;
      }
      const request = this.pending.get(message.id);
      if (!request) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if (message.error !== undefined) request.reject(new Error(`the tokenizer failed on this text: ${message.error}`));
      else request.resolve(Array.from(message.ids as Int32Array));
    });
    // A worker that dies (out of memory, say) fails what it held; the next request starts another.
    const lost = (why: string) => {
      if (this.worker === worker) this.worker = undefined;
      if (!ready && !this.closed) this.unavailable = why;
      this.fail(new EncoderThreadError(`the tokenizer's worker thread stopped (${why}); the text was not encoded`), worker);
    };
    worker.on("error", (err) => lost(err.message));
    worker.on("exit", (code) => lost(`exit code ${code}`));
    return worker;
  }

  /** Rejects the pending requests of `worker`, or of every worker. */
  private fail(err: Error, worker?: Worker): void {
    for (const [id, request] of [...this.pending])
      if (worker === undefined || request.worker === worker) {
        this.pending.delete(id);
        request.reject(err);
      }
  }
}
