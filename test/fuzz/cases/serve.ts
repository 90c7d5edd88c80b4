// Request bodies of every kind sent to the OpenAI-compatible server (completions and chat
// completions, whole and streamed): fields of the wrong type, numbers JSON can write but no
// sampler takes (1e400, which parses as Infinity, 2^53 + 1, -0, denormals), long and odd strings,
// nested junk, unknown fields. The server answers 200 with a well-formed completion, or a 4xx
// whose OpenAI error body says what is wrong; never a 5xx. After each request it still answers
// /health, and every KV page is back in the pool.
import * as path from "node:path";
import type { FastifyInstance } from "fastify";
import { createServer, loadModel, type Model } from "../../../lib";
import { fixtureRoot } from "../../helpers/fixtures";
import { fail, usefulnessProblem } from "../harness/checks";

/** A JSON value, or a number literal written as it is (JSON.stringify cannot write 1e400). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json } | { $raw: string };

export interface ServeCase {
  route: "completions" | "chat";
  /** The body's fields (a field set to { $raw } is written as that literal). */
  body: Record<string, Json>;
}

const modelName = "llama-tiny";
let running: { app: FastifyInstance; url: string; model: Model } | undefined;

async function server() {
  if (running) return running;
  const model = await loadModel(path.join(fixtureRoot, modelName), { device: "cpu", kvCacheBytes: 8 * 2 ** 20, pageSize: 4 });
  const app = await createServer(model, { modelName, maxContext: 96, defaultMaxTokens: 8, bodyLimit: 64 * 1024 });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  running = { app, url, model };
  return running;
}

/** JSON text of `value`, raw literals as they are. */
export function jsonText(value: Json): string {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && typeof value.$raw === "string") return value.$raw;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(",")}]`;
  if (value !== null && typeof value === "object")
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v as Json)}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

function checkCompletion(c: ServeCase, text: string, what: string): void {
  const body = JSON.parse(text) as {
    choices?: Array<{ text?: unknown; message?: { content?: unknown }; finish_reason?: unknown }>;
    usage?: { prompt_tokens?: unknown; completion_tokens?: unknown };
  };
  const choice = body.choices?.[0];
  const content = c.route === "chat" ? choice?.message?.content : choice?.text;
  if (typeof content !== "string") fail(`${what}: 200 without a ${c.route === "chat" ? "message content" : "text"}: ${text.slice(0, 300)}`);
  if (!Number.isInteger(body.usage?.prompt_tokens) || !Number.isInteger(body.usage?.completion_tokens))
    fail(`${what}: 200 without token counts: ${text.slice(0, 300)}`);
  if (typeof choice?.finish_reason !== "string") fail(`${what}: 200 without a finish_reason: ${text.slice(0, 300)}`);
}

function checkStream(text: string, what: string): void {
  const events = text
    .split("\n\n")
    .map((e) => e.trim())
    .filter(Boolean);
  if (events[events.length - 1] !== "data: [DONE]") fail(`${what}: a stream that does not end with [DONE]: ${text.slice(-300)}`);
  for (const e of events.slice(0, -1)) {
    if (!e.startsWith("data: ")) fail(`${what}: a stream event that is not data: ${e.slice(0, 200)}`);
    const data = JSON.parse(e.slice(6)) as { error?: { message?: unknown } };
    if (data.error) fail(`${what}: an error inside a 200 stream: ${e.slice(0, 300)}`);
  }
}

function checkError(status: number, text: string, what: string): void {
  let body: { error?: { message?: unknown; type?: unknown } };
  try {
    body = JSON.parse(text);
  } catch {
    fail(`${what}: ${status} whose body is not JSON: ${text.slice(0, 300)}`);
  }
  const message = body.error?.message;
  if (typeof message !== "string" || typeof body.error?.type !== "string")
    fail(`${what}: ${status} without an OpenAI error body: ${text.slice(0, 300)}`);
  const problem = usefulnessProblem(new Error(message));
  if (problem) fail(`${what}: ${status}: ${problem}`);
}

export async function runCase(c: ServeCase): Promise<void> {
  const { url, model } = await server();
  const text = jsonText(c.body);
  const route = `/v1/${c.route === "chat" ? "chat/completions" : "completions"}`;
  const what = `POST ${route} ${text.slice(0, 400)}`;
  const res = await fetch(`${url}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: text,
  });
  const answer = await res.text();
  if (res.status >= 500) fail(`${what}: ${res.status} ${answer.slice(0, 400)}`);
  if (res.status === 200) {
    if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) checkStream(answer, what);
    else checkCompletion(c, answer, what);
  } else if (res.status >= 400) checkError(res.status, answer, what);
  else fail(`${what}: status ${res.status}`);
  const health = await fetch(`${url}/health`);
  if (health.status !== 200) fail(`${what}: /health answers ${health.status} afterwards`);
  // A finished request frees its pages at the scheduler's next turn.
  for (let i = 0; i < 200 && model.pool.usedPages !== 0; i++) await new Promise((r) => setTimeout(r, 5));
  if (model.pool.usedPages !== 0) fail(`${what}: ${model.pool.usedPages} KV pages still in use afterwards`);
}

export async function teardown(): Promise<void> {
  if (!running) return;
  await running.app.close();
  await running.model.dispose();
  running = undefined;
}
