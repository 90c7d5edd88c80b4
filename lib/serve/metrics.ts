// The server's Prometheus metrics (GET /metrics): the queue, the batch, the KV pool (full caches
// and rings apart), tokens in and out, and the latencies a user feels — time to first token and
// the time between tokens. Gauges are read when scraped; each server has its own registry.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { PagePool } from "../cache/page-pool";
import type { DecodeStats } from "../model/decode-graph";
import type { Scheduler } from "./scheduler";

// Seconds, from a fast GPU's few milliseconds to a long prompt's wait on a busy CPU.
const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The metrics of one server.
 * @example
 * const metrics = new ServerMetrics(scheduler, model.pool, () => model.decoder.stats);
 * metrics.timeToFirstToken.observe(0.12);
 * reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly promptTokens: Counter;
  readonly generatedTokens: Counter;
  readonly requests: Counter<"endpoint" | "outcome">;
  readonly preemptions: Counter;
  readonly timeToFirstToken: Histogram;
  readonly interTokenLatency: Histogram;
  readonly queueWait: Histogram;
  readonly stepTime: Histogram<"kind">;

  constructor(scheduler: Scheduler, pool: PagePool, decodeStats: () => DecodeStats) {
    const registers = [this.registry];
    new Gauge({
      name: "lighttransfer_queue_length",
      help: "Requests waiting for admission",
      registers,
      collect() {
        this.set(scheduler.queued);
      },
    });
    new Gauge({
      name: "lighttransfer_running_sequences",
      help: "Sequences admitted: prefilling or decoding",
      registers,
      collect() {
        this.set(scheduler.runningCount);
      },
    });
    new Gauge({
      name: "lighttransfer_kv_pages",
      help: "KV pages of the pool, used and free",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "used" }, pool.usedPages);
        this.set({ state: "free" }, pool.freePages);
      },
    });
    new Gauge({
      name: "lighttransfer_kv_pages_in_use",
      help: "KV pages the running sequences hold, by cache kind: full caches, and rings (lazy layers, sliding windows)",
      labelNames: ["cache"],
      registers,
      collect() {
        const { full, ring } = scheduler.pagesByKind();
        this.set({ cache: "full" }, full);
        this.set({ cache: "ring" }, ring);
      },
    });
    this.promptTokens = new Counter({
      name: "lighttransfer_prompt_tokens_total",
      help: "Prompt tokens prefilled (re-prefills of preempted sequences included)",
      registers,
    });
    this.generatedTokens = new Counter({ name: "lighttransfer_generated_tokens_total", help: "Tokens generated", registers });
    this.requests = new Counter({
      name: "lighttransfer_requests_total",
      help: "Generation requests by endpoint and outcome: a finish reason (eos, stop, length, context), cancelled, 429 or 500",
      labelNames: ["endpoint", "outcome"],
      registers,
    });
    this.preemptions = new Counter({
      name: "lighttransfer_preemptions_total",
      help: "Sequences preempted for lack of KV pages",
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: "lighttransfer_time_to_first_token_seconds",
      help: "From a request's arrival to its first generated token",
      buckets: latencyBuckets,
      registers,
    });
    this.interTokenLatency = new Histogram({
      name: "lighttransfer_inter_token_latency_seconds",
      help: "Between consecutive generated tokens of a request",
      buckets: latencyBuckets,
      registers,
    });
    this.stepTime = new Histogram({
      name: "lighttransfer_step_seconds",
      help: "Turns of the scheduler (what a decoding stream waits between tokens), by what they ran: prefill, decode or mixed",
      labelNames: ["kind"],
      buckets: latencyBuckets,
      registers,
    });
    new Gauge({
      name: "lighttransfer_decode_steps",
      help: "Decode steps of the model since it was loaded: replayed from a CUDA graph, or run op by op",
      labelNames: ["path"],
      registers,
      collect() {
        const stats = decodeStats();
        this.set({ path: "graph" }, stats.graphSteps);
        this.set(
          { path: "eager" },
          Object.values(stats.eagerSteps).reduce((a, b) => a + (b ?? 0), 0),
        );
      },
    });
    new Gauge({
      name: "lighttransfer_decode_graph_recordings",
      help: "Decode-step CUDA graphs recorded since the model was loaded (a new batch size, or wider page tables)",
      registers,
      collect() {
        this.set(decodeStats().recordings);
      },
    });
    this.queueWait = new Histogram({
      name: "lighttransfer_queue_wait_seconds",
      help: "From a request's arrival (or preemption) to its admission",
      buckets: latencyBuckets,
      registers,
    });
  }
}
