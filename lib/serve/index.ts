// createServer, the server's entry point: fastify, prom-client and the routes load when the first
// server is created, so a program that only generates does not carry the HTTP stack.
import type { FastifyInstance } from "fastify";
import type { Model } from "../api/model";
import type { ServerOptions } from "./server";

export type { ServerOptions } from "./server";

/**
 * An OpenAI-compatible HTTP server over `model`: a fastify instance, not yet listening. Requests
 * name the model by `modelName`; per-request hybrid options go in the `lighttransfer` extension
 * field. close() ends what is still running (503 "server_shutdown", its pages freed) and stops
 * listening; the model stays loaded.
 * @example
 * const model = await loadModel("./Llama-3.1-8B-Instruct");
 * const server = await createServer(model, { modelName: "llama", hybrid: { mode: "auto", fullLayers: 0.5 } });
 * await server.listen({ host: "127.0.0.1", port: 8080 });
 * // curl http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '{"model":"llama","messages":[{"role":"user","content":"Hi"}]}'
 * await server.close();
 */
export async function createServer(model: Model, options?: ServerOptions): Promise<FastifyInstance> {
  const { buildServer } = await import("./server");
  return buildServer(model, options);
}
