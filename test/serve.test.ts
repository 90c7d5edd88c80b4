// The OpenAI-compatible server on 127.0.0.1, driven by the official `openai` client and by raw
// requests: what it answers is what the library generates for the same request, bad requests get
// the right status and an OpenAI error body while the server stays up, concurrent streams give what
// each gives alone, a client going away cancels its request, the scheduler interleaves a long
// prompt with running streams and preempts when the pool runs out, and no KV page outlives a
// request, and admission counts the pages a prefill really holds. Prompts, lengths and sampling options are drawn afresh on every run.
// OpenAI parameters the server does not support are refused by name, a text too long to fit is
// refused before it is tokenized, and completions' logprobs name and place tokens as OpenAI does.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import autocannon from "autocannon";
import type { FastifyInstance } from "fastify";
import OpenAI from "openai";
import { createServer, type GenerateOptions, loadModel, type Model, type Prompt, type ServerOptions, type SessionOptions } from "../lib";
import { resolveHybrid } from "../lib/hybrid/options";
import { prefillPeakPages, sequenceLayout } from "../lib/hybrid/planner";
import { type CompletionLogprobs, wireLogprobs } from "../lib/serve/openai";
import { fixtureRoot } from "./helpers/fixtures";
import { copyFixture, editJson } from "./helpers/model-dir";
import { Random } from "./helpers/reference";

const rng = new Random();
const modelName = "llama-tiny";
const eos = 1;
let model: Model;

beforeAll(async () => {
  model = await loadModel(path.join(fixtureRoot, modelName), { device: "cpu", kvCacheBytes: 16 * 2 ** 20, pageSize: 4 });
});
afterAll(async () => model?.dispose());

type Server = Awaited<ReturnType<typeof start>>;

/** A running server over `on` and an openai client for it; close() stops it. */
async function start(options: ServerOptions = {}, on: Model = model) {
  const app: FastifyInstance = await createServer(on, { modelName, ...options });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  return { app, url, client, close: () => app.close() };
}

/** Runs `body` against a server started with `options`, closing the server after it. */
async function withServer(body: (server: Server) => Promise<void>, options: ServerOptions = {}): Promise<void> {
  const server = await start(options);
  try {
    await body(server);
  } finally {
    await server.close();
  }
}

/** Random token ids, never EOS (so a prompt does not look ended). */
function randomIds(length: number): number[] {
  return Array.from({ length }, () => {
    const id = rng.int(2, 383);
    return id === eos ? 2 : id;
  });
}

/** What the library gives for `prompt` alone: text, tokens and finish reason. */
async function library(prompt: Prompt, options: GenerateOptions & SessionOptions) {
  let text = "";
  const tokens: number[] = [];
  let finishReason = "";
  for await (const chunk of model.generate(prompt, options)) {
    text += chunk.text;
    tokens.push(...chunk.tokens);
    finishReason = chunk.finishReason ?? finishReason;
  }
  return { text, tokens, finishReason };
}

const openAiReason = (reason: string) => (reason === "eos" || reason === "stop" ? "stop" : "length");

/** A random prompt of `length` tokens (drawn from the range) that `accept` takes, in at most 50 draws; `what` says what it must do. */
async function drawPrompt(length: [number, number], accept: (ids: number[]) => Promise<boolean>, what: string): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const ids = randomIds(rng.int(...length));
    if (await accept(ids)) return ids;
  }
  throw new Error(`no prompt in 50 draws ${what} (seed ${rng.seed})`);
}

/** A prompt (of `length` tokens, drawn from the range) whose greedy continuation runs `tokens` tokens without reaching EOS. */
function promptWithoutEos(tokens: number, options: SessionOptions = {}, length: [number, number] = [4, 16]): Promise<number[]> {
  return drawPrompt(
    length,
    async (ids) => (await library(ids, { ...options, maxNewTokens: tokens, temperature: 0 })).finishReason === "length",
    `went ${tokens} greedy tokens without EOS`,
  );
}

/** The smallest gap between the two largest logits over the greedy run of `prompt` (the difference of its top two logprobs). */
async function smallestGreedyGap(prompt: number[], options: GenerateOptions & SessionOptions): Promise<number> {
  let gap = Number.POSITIVE_INFINITY;
  for await (const chunk of model.generate(prompt, { ...options, temperature: 0, logprobs: 2 }))
    for (const { top_logprobs: top } of chunk.logprobs ?? []) gap = Math.min(gap, top[0].logprob - top[1].logprob);
  return gap;
}

// Batched with other sequences, or re-prefilled after a preemption, a step's logits differ from
// the alone run's in their last bits: where the top two come that close, greedy may pick either.
// step.test.ts holds decode and prefill logits to 1e-4 of the logit scale (under 10 here) of each
// other; a run whose top two stay twice that apart picks the same tokens however it is computed.
const clearGreedyGap = 2e-3;

/** A prompt (of a length drawn from `length`) whose greedy run of `tokens` tokens, past EOS, never nears a tie. */
function promptWithClearGreedyRun(tokens: number, length: [number, number]): Promise<number[]> {
  return drawPrompt(
    length,
    async (ids) => (await smallestGreedyGap(ids, { maxNewTokens: tokens, stopAtEos: false })) > clearGreedyGap,
    `kept its top two logits ${clearGreedyGap} apart over ${tokens} greedy tokens`,
  );
}

/** A greedy completion streamed past EOS (`max_tokens` tokens unless aborted through `signal`), to keep a slot busy. */
function streamPastEos(client: OpenAI, prompt: number[], maxTokens: number, signal: AbortSignal) {
  return client.completions.create(
    { model: modelName, prompt, max_tokens: maxTokens, temperature: 0, stream: true, lighttransfer: { ignore_eos: true } } as never,
    { signal },
  ) as unknown as Promise<AsyncIterable<OpenAI.Completion>>;
}

async function post(url: string, route: string, body: unknown, headers: Record<string, string> = { "content-type": "application/json" }) {
  const res = await fetch(`${url}${route}`, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
  return {
    status: res.status,
    body: (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } },
  };
}

/** Polls until the pool holds no page (a cancelled request frees its pages at the scheduler's next turn). */
async function poolEmpties(on: Model = model): Promise<void> {
  for (let i = 0; i < 200 && on.pool.usedPages !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(on.pool.usedPages).toBe(0);
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A token's name in completions' logprobs, as OpenAI writes it: its text, or its bytes where they are part of a character. */
function completionName({ token, bytes }: { token: string; bytes: number[] | null }): string {
  try {
    utf8.decode(Uint8Array.from(bytes ?? []));
    return token;
  } catch {
    return `bytes:${bytes!.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}`;
  }
}

/** Completions' top_logprobs of some alternatives (likeliest first): a name shared keeps the likeliest's logprob. */
function completionAlternatives(top: ReadonlyArray<{ token: string; logprob: number; bytes: number[] | null }>): Record<string, number> {
  const named: Record<string, number> = {};
  for (const t of [...top].reverse()) named[completionName(t)] = t.logprob;
  return named;
}

describe(`seed ${rng.seed}`, () => {
  test("the openai client: completions and chat, whole and streamed, give what the library generates", async () => {
    await withServer(async (server) => {
      const ids = randomIds(rng.int(3, 24));
      const maxTokens = rng.int(1, 24);
      const expected = await library(ids, { maxNewTokens: maxTokens, temperature: 0 });

      const whole = await server.client.completions.create({ model: modelName, prompt: ids, max_tokens: maxTokens, temperature: 0 });
      expect(whole.object).toBe("text_completion");
      expect(whole.system_fingerprint).toBe("lighttransfer-cpu-bf16-f32");
      expect(whole.choices[0].text).toBe(expected.text);
      expect(whole.choices[0].finish_reason).toBe(openAiReason(expected.finishReason));
      expect(whole.usage).toEqual({
        prompt_tokens: ids.length,
        completion_tokens: expected.tokens.length,
        total_tokens: ids.length + expected.tokens.length,
      });

      const stream = await server.client.completions.create({
        model: modelName,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let streamed = "";
      let finish: string | null = null;
      let used: OpenAI.CompletionUsage | undefined | null;
      let tokenChunks = 0;
      for await (const chunk of stream) {
        if (chunk.choices.length) {
          streamed += chunk.choices[0].text;
          finish = chunk.choices[0].finish_reason ?? finish;
          if (!chunk.choices[0].finish_reason) tokenChunks++;
        } else used = chunk.usage;
      }
      expect(streamed).toBe(expected.text);
      // One chunk per token (so clients can time each), then the one with the finish reason.
      expect(tokenChunks).toBe(expected.tokens.length);
      expect(finish).toBe(openAiReason(expected.finishReason));
      expect(used?.completion_tokens).toBe(expected.tokens.length);

      const messages = [{ role: "user" as const, content: `Say ${rng.int(0, 1000)}` }];
      const chatExpected = await library(messages, { maxNewTokens: maxTokens, temperature: 0 });
      const chat = await server.client.chat.completions.create({ model: modelName, messages, max_tokens: maxTokens, temperature: 0 });
      // Every field OpenAI's message has, refusal and annotations among them.
      expect(chat.choices[0].message).toEqual({ role: "assistant", content: chatExpected.text, refusal: null, annotations: [] });
      expect(chat.system_fingerprint).toBe("lighttransfer-cpu-bf16-f32");
      expect(chat.usage?.completion_tokens).toBe(chatExpected.tokens.length);
      const chatStream = await server.client.chat.completions.create({
        model: modelName,
        messages,
        max_completion_tokens: maxTokens,
        temperature: 0,
        stream: true,
      });
      let chatText = "";
      const roles: string[] = [];
      for await (const chunk of chatStream) {
        expect(chunk.usage).toBeUndefined();
        const delta = chunk.choices[0]?.delta;
        if (delta?.role) roles.push(delta.role);
        chatText += delta?.content ?? "";
      }
      expect(roles).toEqual(["assistant"]);
      expect(chatText).toBe(chatExpected.text);

      const listed = await server.client.models.list();
      expect(listed.data.map((m) => m.id)).toEqual([modelName]);
    });
    await poolEmpties();
  });

  test("logprobs: completions (count) and chat (logprobs, top_logprobs), whole and streamed, are the library's", async () => {
    await withServer(async (server) => {
      const ids = randomIds(rng.int(3, 24));
      const maxTokens = rng.int(1, 12);
      const k = rng.int(0, 5);
      const expected: Array<{ token: string; logprob: number; top: Record<string, number> }> = [];
      for await (const chunk of model.generate(ids, { maxNewTokens: maxTokens, temperature: 0, logprobs: k }))
        for (const e of chunk.logprobs ?? [])
          expected.push({ token: completionName(e), logprob: e.logprob, top: completionAlternatives(e.top_logprobs) });
      expect(expected.length).toBeGreaterThan(0);

      const whole = await server.client.completions.create({
        model: modelName,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: k,
      });
      const lp = whole.choices[0].logprobs!;
      expect(lp.tokens).toEqual(expected.map((e) => e.token));
      expect(lp.token_logprobs).toEqual(expected.map((e) => e.logprob));
      expect(lp.top_logprobs).toEqual(expected.map((e) => e.top));

      const stream = await server.client.completions.create({
        model: modelName,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: k,
        stream: true,
      });
      const streamed: Omit<OpenAI.Completions.CompletionChoice.Logprobs, "top_logprobs"> = {
        tokens: [],
        token_logprobs: [],
        text_offset: [],
      };
      for await (const chunk of stream)
        for (const key of ["tokens", "token_logprobs", "text_offset"] as const)
          (streamed[key] as unknown[]).push(...(chunk.choices[0]?.logprobs?.[key] ?? []));
      expect(streamed).toEqual({ tokens: lp.tokens, token_logprobs: lp.token_logprobs, text_offset: lp.text_offset });

      const messages = [{ role: "user" as const, content: `Count to ${rng.int(2, 9)}` }];
      const chatExpected: Array<{ token: string; logprob: number; bytes: number[] | null; top_logprobs: unknown[] }> = [];
      for await (const chunk of model.generate(messages, { maxNewTokens: maxTokens, temperature: 0, logprobs: k }))
        for (const e of chunk.logprobs ?? [])
          chatExpected.push({
            token: e.token,
            logprob: e.logprob,
            bytes: e.bytes,
            top_logprobs: e.top_logprobs.map(({ token, logprob, bytes }) => ({ token, logprob, bytes })),
          });
      const chat = await server.client.chat.completions.create({
        model: modelName,
        messages,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: true,
        top_logprobs: k,
      });
      expect(chat.choices[0].logprobs?.content).toEqual(chatExpected);
      const chatStream = await server.client.chat.completions.create({
        model: modelName,
        messages,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: true,
        top_logprobs: k,
        stream: true,
      });
      const chatStreamed: unknown[] = [];
      for await (const chunk of chatStream) chatStreamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
      expect(chatStreamed).toEqual(chatExpected);
      // Without logprobs the field is null.
      const plain = await server.client.chat.completions.create({ model: modelName, messages, max_tokens: 1, temperature: 0 });
      expect(plain.choices[0].logprobs).toBeNull();
    });
    await poolEmpties();
  });

  test("completions logprobs with a stop string: text_offset stays within the text, never decreases, and streams as it is whole", async () => {
    await withServer(async (server) => {
      const prompt = rng.pick(["The house was", "Once upon a time", "The jury said"]);
      const free = await server.client.completions.create({ model: modelName, prompt, max_tokens: 40, temperature: 0, logprobs: 0 });
      // A stop string of a later stretch of the greedy text: the tokens of its start were generated, held back, and dropped.
      const tokens = free.choices[0].logprobs!.tokens!;
      const from = rng.int(Math.floor(tokens.length / 3), tokens.length - 3);
      const drawn = tokens
        .slice(from, from + 3)
        .join("")
        .trim();
      expect(drawn.length).toBeGreaterThan(1);
      await expectOffsetsWithin(server, prompt, drawn);
    });
    // And a stop string whose start ends a token and whose later tokens are sent with no text of
    // their own (" I", "t", " was" after " a little bit." on the project's trained model).
    const demo = await loadModel(path.join(__dirname, "..", "models", "demo"), { device: "cpu", kvCacheBytes: 16 * 2 ** 20 });
    const server = await start({}, demo);
    try {
      await expectOffsetsWithin(server, "The house was", "It was");
    } finally {
      await server.close();
      await demo.dispose();
    }
    await poolEmpties();
  });

  /** A greedy completion that `stop` ends: its text_offset within its text, non-decreasing, and the same streamed. */
  async function expectOffsetsWithin(server: Server, prompt: string, stop: string): Promise<void> {
    const body = { model: modelName, prompt, max_tokens: 40, temperature: 0, logprobs: 1, stop };
    const whole = await server.client.completions.create(body);
    const { text } = whole.choices[0];
    const offsets = whole.choices[0].logprobs!.text_offset!;
    expect({ stop, text, offsets, within: offsets.every((at, i) => at <= text.length && at >= (offsets[i - 1] ?? 0)) }).toEqual({
      stop,
      text,
      offsets,
      within: true,
    });
    const streamed: number[] = [];
    for await (const chunk of await server.client.completions.create({ ...body, stream: true }))
      streamed.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
    expect(streamed).toEqual(offsets);
  }

  test("completions logprobs: a token of part of a character is named bytes:\\x.., and text_offset is where each token's text is", async () => {
    const tokenizer = model.tokenizer;
    const maxTokens = rng.int(24, 48);
    const ignoreEos = rng.next() < 0.5;
    let run: Array<{ id: number; name: string }> = [];
    // A greedy run with a character split over tokens, and text after it.
    const ids = await drawPrompt(
      [2, 16],
      async (drawn) => {
        run = [];
        for await (const chunk of model.generate(drawn, { maxNewTokens: maxTokens, temperature: 0, stopAtEos: !ignoreEos, logprobs: 0 }))
          for (const e of chunk.logprobs ?? []) run.push({ id: e.id, name: completionName(e) });
        const split = run.findIndex((t) => t.name.startsWith("bytes:"));
        return split >= 0 && run.slice(split).some((t) => !t.name.startsWith("bytes:"));
      },
      "split a character over tokens in its greedy run, with text after it",
    );
    await withServer(async (server) => {
      const body = {
        model: modelName,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        logprobs: 0,
        lighttransfer: { ignore_eos: ignoreEos },
      };
      const whole = (await server.client.completions.create(body as never)) as unknown as OpenAI.Completion;
      const { text, logprobs } = whole.choices[0];
      expect(logprobs!.tokens).toEqual(run.map((t) => t.name));
      // Where the text of the tokens before each one ends in the completion.
      const lcp = (a: string, b: string) => {
        let n = 0;
        while (n < a.length && n < b.length && a[n] === b[n]) n++;
        return n;
      };
      const before = run.map((_, i) =>
        lcp(
          text,
          tokenizer.decode(
            run.slice(0, i).map((t) => t.id),
            { skipSpecialTokens: true },
          ),
        ),
      );
      const offsets = logprobs!.text_offset!;
      // A token with text of its own starts there; one of part of a character (or a special token,
      // which has no text) where that character does: not after there, nor before the token before it.
      const placed = run.map(({ id, name }, i) => {
        const ownText = !name.startsWith("bytes:") && tokenizer.decode([id], { skipSpecialTokens: true }) !== "";
        return ownText ? offsets[i] === before[i] : offsets[i] <= before[i] && offsets[i] >= (offsets[i - 1] ?? 0);
      });
      expect({ seed: rng.seed, text, tokens: logprobs!.tokens, offsets, placed }).toEqual({
        seed: rng.seed,
        text,
        tokens: logprobs!.tokens,
        offsets,
        placed: run.map(() => true),
      });
      const stream = await server.client.completions.create({ ...body, stream: true } as never);
      const streamed: number[] = [];
      for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>)
        streamed.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
      expect(streamed).toEqual(offsets);
    });
    await poolEmpties();
  });

  test("completions' top_logprobs name a token of part of a character by its bytes, and a name two alternatives share keeps the likelier's logprob", () => {
    const logprobs = Array.from({ length: 4 }, () => -rng.next() * 10).sort((a, b) => b - a);
    const lead = rng.int(0xe1, 0xec);
    const top = [
      { token: "a", id: rng.int(0, 99), logprob: logprobs[0], bytes: [0x61] },
      { token: "\uFFFD", id: rng.int(100, 199), logprob: logprobs[1], bytes: [lead] },
      { token: "\uFFFD", id: rng.int(200, 299), logprob: logprobs[2], bytes: [0x80, 0x80] },
      // Another token of the same text (SentencePiece's byte token <0x61> beside "a", say).
      { token: "a", id: rng.int(300, 399), logprob: logprobs[3], bytes: [0x61] },
    ];
    const wire = wireLogprobs("completion", [{ ...top[1], top_logprobs: top }], [0]) as CompletionLogprobs;
    expect(wire.tokens).toEqual([`bytes:\\x${lead.toString(16)}`]);
    expect(wire.top_logprobs).toEqual([
      { a: logprobs[0], [`bytes:\\x${lead.toString(16)}`]: logprobs[1], "bytes:\\x80\\x80": logprobs[2] },
    ]);
  });

  test("stop strings end the text before them, streamed and not, with finish_reason stop", async () => {
    await withServer(async (server) => {
      // A continuation of 24 tokens without EOS and of at least 4 characters, so a stop string can
      // be taken from inside it past its start.
      let text = "";
      const ids = await drawPrompt(
        [4, 16],
        async (drawn) => {
          const run = await library(drawn, { maxNewTokens: 24, temperature: 0 });
          text = run.text;
          return run.finishReason === "length" && text.length >= 4;
        },
        "went 24 greedy tokens without EOS to 4 or more characters",
      );
      // A stop string taken from inside the continuation, so it is met.
      const at = rng.int(1, text.length - 3);
      const stop = text.slice(at, at + rng.int(1, 2));
      const expected = await library(ids, { maxNewTokens: 24, temperature: 0, stop: [stop] });
      expect(expected.finishReason).toBe("stop");
      const whole = await server.client.completions.create({ model: modelName, prompt: ids, max_tokens: 24, temperature: 0, stop });
      expect(whole.choices[0]).toMatchObject({ text: expected.text, finish_reason: "stop" });
      expect(whole.choices[0].text).not.toContain(stop);
      const stream = await server.client.completions.create({
        model: modelName,
        prompt: ids,
        max_tokens: 24,
        temperature: 0,
        stop: [stop, "never-generated-\u2603"],
        stream: true,
      });
      let streamed = "";
      for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
      expect(streamed).toBe(expected.text);
    });
  });

  test("a client that aborts mid-stream cancels its request: its pages come back and the server goes on", async () => {
    await withServer(async (server) => {
      const ids = await promptWithoutEos(40);
      const controller = new AbortController();
      const stream = await server.client.completions.create(
        { model: modelName, prompt: ids, max_tokens: 4000, temperature: 0, stream: true, lighttransfer: { ignore_eos: true } } as never,
        { signal: controller.signal },
      );
      let chunks = 0;
      try {
        for await (const _ of stream as unknown as AsyncIterable<unknown>) if (++chunks === 3) controller.abort();
      } catch (err) {
        expect((err as Error).name).toMatch(/Abort/);
      }
      expect(chunks).toBe(3);
      await poolEmpties();
      expect(await metric(server.url, 'lighttransfer_requests_total{endpoint="completion",outcome="cancelled"}')).toBe(1);
      expect(await metric(server.url, "lighttransfer_running_sequences")).toBe(0);
      const after = await server.client.completions.create({ model: modelName, prompt: ids, max_tokens: 2, temperature: 0 });
      expect(after.choices[0].finish_reason).toBeDefined();
    });
    await poolEmpties();
  });

  test("a client that aborts while its prompt is being prefilled cancels the prefill under way: its pages come back", async () => {
    // One-token chunks and a one-token budget: the prompt's prefill takes hundreds of turns.
    await withServer(
      async (server) => {
        const ids = randomIds(rng.int(400, 600));
        const controller = new AbortController();
        const request = server.client.completions.create(
          { model: modelName, prompt: ids, max_tokens: 4, temperature: 0, stream: true } as never,
          { signal: controller.signal },
        ) as unknown as Promise<AsyncIterable<OpenAI.Completion>>;
        // The prefill has begun once the prompt holds pages.
        while (model.pool.usedPages === 0) await new Promise((r) => setTimeout(r, 1));
        controller.abort();
        let chunks = 0;
        try {
          for await (const _ of await request) chunks++;
        } catch (err) {
          // Aborted before the response began (the client's "Request was aborted.") or after.
          expect(`${(err as Error).name}: ${(err as Error).message}`).toMatch(/abort/i);
        }
        await poolEmpties();
        // Prompt tokens are counted when a prompt is all in: none were.
        expect({ seed: rng.seed, chunks, prompt: await metric(server.url, "lighttransfer_prompt_tokens_total") }).toEqual({
          seed: rng.seed,
          chunks: 0,
          prompt: 0,
        });
        expect(await metric(server.url, 'lighttransfer_requests_total{endpoint="completion",outcome="cancelled"}')).toBe(1);
        const after = await server.client.completions.create({ model: modelName, prompt: ids.slice(0, 20), max_tokens: 2, temperature: 0 });
        expect(after.choices[0].finish_reason).toBeDefined();
      },
      { stepTokens: 1, prefillChunk: 1 },
    );
    await poolEmpties();
  });

  test.each([false, true])(
    "a client that leaves while its long prompt is encoded on the tokenizer's thread (stream %p): the request never runs",
    async (stream) => {
      const demo = await loadModel(path.join(__dirname, "..", "models", "demo"), { device: "cpu", kvCacheBytes: 16 * 2 ** 20 });
      const server = await start({}, demo);
      try {
        const words = ["the", "house", "was", "quiet", "and", "they", "said", "that", "it", "would", "rain"];
        let prompt = "";
        while (prompt.length < 8400) prompt += `${words[rng.int(0, words.length - 1)]} `;
        expect(demo.tokenizer.encode(prompt).length).toBeLessThan(3800);
        // Text this long is encoded on the tokenizer's thread: the request's encoding is held
        // until its client has left (and the server has seen the connection close).
        const encodeAsync = demo.tokenizer.encodeAsync.bind(demo.tokenizer);
        let reached!: () => void;
        const encoding = new Promise<void>((resolve) => {
          reached = resolve;
        });
        let release!: () => void;
        const held = new Promise<void>((resolve) => {
          release = resolve;
        });
        const spy = jest.spyOn(demo.tokenizer, "encodeAsync").mockImplementation(async (text, options) => {
          reached();
          await held;
          return encodeAsync(text, options);
        });
        const body = JSON.stringify({
          model: modelName,
          prompt,
          max_tokens: 50,
          temperature: 0,
          stream,
          lighttransfer: { ignore_eos: true },
        });
        const { port } = new URL(server.url);
        const request = http.request({
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/v1/completions",
          headers: { "content-type": "application/json" },
        });
        request.on("error", () => {});
        request.end(body);
        await encoding;
        request.destroy();
        const connections = () =>
          new Promise<number>((resolve, reject) => server.app.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
        while ((await connections()) > 0) await new Promise((resolve) => setTimeout(resolve, 5));
        release();
        spy.mockRestore();
        const cancelled = 'lighttransfer_requests_total{endpoint="completion",outcome="cancelled"}';
        for (let i = 0; i < 300 && (await metric(server.url, cancelled)) === 0; i++) await new Promise((r) => setTimeout(r, 10));
        expect({
          cancelled: await metric(server.url, cancelled),
          prompt: await metric(server.url, "lighttransfer_prompt_tokens_total"),
          pages: demo.pool.usedPages,
        }).toEqual({ cancelled: 1, prompt: 0, pages: 0 });
      } finally {
        await server.close();
        await demo.dispose();
      }
    },
  );

  test("close() ends what still runs with 503 rather than waiting for it: a stream's last event and a whole answer; every page comes back", async () => {
    const server = await start();
    const body = (ids: number[], stream: boolean) =>
      JSON.stringify({ model: modelName, prompt: ids, max_tokens: 4000, temperature: 0, stream, lighttransfer: { ignore_eos: true } });
    const streamed = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: body(randomIds(rng.int(4, 16)), true),
    });
    const whole = post(server.url, "/v1/completions", JSON.parse(body(randomIds(rng.int(4, 16)), false)));
    while ((await metric(server.url, "lighttransfer_running_sequences")) < 2) await new Promise((r) => setTimeout(r, 5));
    await server.close();
    // Had close() waited for them, both would have ended with their 4000 tokens and a 200.
    const answer = await whole;
    expect({ status: answer.status, code: answer.body.error?.code, type: answer.body.error?.type }).toEqual({
      status: 503,
      code: "server_shutdown",
      type: "server_error",
    });
    const events = (await streamed.text())
      .split("\n\n")
      .filter((e) => e)
      .map((e) => e.replace(/^data: /, ""));
    expect(streamed.status).toBe(200);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2) ?? "{}").error?.code).toBe("server_shutdown");
    expect(events.length).toBeLessThan(4000);
    await poolEmpties();
  });

  test("malformed requests get their status and an OpenAI error body, and the server stays up", async () => {
    await withServer(
      async (server) => {
        const ok = { model: modelName, prompt: "Hello", max_tokens: 2 };
        const chat = { model: modelName, messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
        // More than 64 words (a token each at least), in too few bytes to be refused before it is tokenized.
        const words = Array.from({ length: rng.int(65, 200) }, () => rng.pick(["x", "é", "ab", "\u2603"])).join(" ");
        const unsupported = (name: string, route: string, body: unknown, param: string) =>
          ({
            name,
            route,
            body,
            status: 400,
            message: new RegExp(`${param} is not supported`),
            param,
            code: "unsupported_parameter",
          }) as const;
        const cases: Array<{
          name: string;
          route?: string;
          body: unknown;
          status: number;
          message: RegExp;
          param?: string | null;
          code?: string | null;
        }> = [
          { name: "bad JSON", body: '{"model": "llama-tiny", "prompt": ', status: 400, message: /JSON/ },
          { name: "a string max_tokens", body: { ...ok, max_tokens: "5" }, status: 400, message: /max_tokens/, param: "max_tokens" },
          { name: "negative max_tokens", body: { ...ok, max_tokens: -rng.int(1, 100) }, status: 400, message: /max_tokens must be >= 0/ },
          { name: "a string temperature", body: { ...ok, temperature: "hot" }, status: 400, message: /temperature/ },
          { name: "top_p above 1", body: { ...ok, top_p: 1.5 }, status: 400, message: /top_p/ },
          { name: "an object prompt", body: { ...ok, prompt: { text: "hi" } }, status: 400, message: /prompt/ },
          { name: "no prompt", body: { model: modelName }, status: 400, message: /prompt/ },
          { name: "token ids beyond the vocabulary", body: { ...ok, prompt: [5, 384] }, status: 400, message: /384/, param: "prompt" },
          {
            name: "a prompt beyond maxContext",
            body: { ...ok, prompt: rng.next() < 0.5 ? randomIds(rng.int(65, 100)) : words },
            status: 400,
            message: /maxContext 64/,
            param: "prompt",
            code: "context_length_exceeded",
          },
          {
            name: "chat messages beyond maxContext",
            route: "/v1/chat/completions",
            body: { ...chat, messages: [{ role: "user", content: words }] },
            status: 400,
            message: /maxContext 64/,
            param: "messages",
            code: "context_length_exceeded",
          },
          {
            name: "max_tokens beyond the library's bound",
            body: { ...ok, max_tokens: 2 ** 30 + rng.int(1, 2 ** 30) },
            status: 400,
            message: /max_tokens must be <= 1073741824/,
            param: "max_tokens",
          },
          {
            name: "max_completion_tokens beyond the library's bound",
            route: "/v1/chat/completions",
            body: { ...chat, max_completion_tokens: 2 ** 30 + rng.int(1, 2 ** 30) },
            status: 400,
            message: /max_completion_tokens must be <= 1073741824/,
            param: "max_completion_tokens",
          },
          {
            name: "top_logprobs beyond 256",
            route: "/v1/chat/completions",
            body: { ...chat, logprobs: true, top_logprobs: rng.int(257, 1000) },
            status: 400,
            message: /top_logprobs must be <= 256/,
            param: "top_logprobs",
          },
          { name: "a seed beyond int64", body: { ...ok, seed: 2 ** 64 }, status: 400, message: /seed/, param: "seed" },
          { name: "a seed that is not an integer", body: { ...ok, seed: 1.5 }, status: 400, message: /seed/, param: "seed" },
          { name: "no model", body: { prompt: "Hello" }, status: 400, message: /model/, param: "model" },
          unsupported("a logit_bias", "/v1/completions", { ...ok, logit_bias: { [rng.int(0, 383)]: rng.int(-100, 100) } }, "logit_bias"),
          unsupported(
            "a json response_format",
            "/v1/chat/completions",
            { ...chat, response_format: { type: "json_object" } },
            "response_format",
          ),
          unsupported("a suffix", "/v1/completions", { ...ok, suffix: "end" }, "suffix"),
          unsupported("best_of > 1", "/v1/completions", { ...ok, best_of: rng.int(2, 5) }, "best_of"),
          unsupported("tools", "/v1/chat/completions", { ...chat, tools: [{ type: "function", function: { name: "f" } }] }, "tools"),
          unsupported("a tool_choice", "/v1/chat/completions", { ...chat, tool_choice: rng.pick(["auto", "required"]) }, "tool_choice"),
          unsupported("functions", "/v1/chat/completions", { ...chat, functions: [{ name: "f" }] }, "functions"),
          unsupported("a function_call", "/v1/chat/completions", { ...chat, function_call: { name: "f" } }, "function_call"),
          { name: "unknown model", body: { ...ok, model: "gpt-4" }, status: 404, message: /gpt-4/, param: "model" },
          {
            name: "logprobs beyond 256",
            body: { ...ok, logprobs: 257 },
            status: 400,
            message: /logprobs must be <= 256/,
            param: "logprobs",
          },
          {
            name: "top_logprobs in completions",
            body: { ...ok, top_logprobs: 2 },
            status: 400,
            message: /top_logprobs/,
            param: "top_logprobs",
          },
          {
            name: "top_logprobs without logprobs",
            route: "/v1/chat/completions",
            body: { model: modelName, messages: [{ role: "user", content: "hi" }], top_logprobs: 2 },
            status: 400,
            message: /top_logprobs needs logprobs: true/,
            param: "top_logprobs",
          },
          { name: "n > 1", body: { ...ok, n: 2 }, status: 400, message: /n is not supported/ },
          {
            name: "stream_options without stream",
            body: { ...ok, stream_options: { include_usage: true } },
            status: 400,
            message: /stream_options is only for a streamed request/,
            param: "stream_options",
          },
          {
            name: "a bad hybrid option",
            body: { ...ok, lighttransfer: { hybrid: { mode: "sometimes" } } },
            status: 400,
            message: /hybrid.mode/,
            param: "lighttransfer.hybrid",
          },
          {
            name: "more last queries than the server's prefill chunk",
            body: { ...ok, lighttransfer: { hybrid: { mode: "auto", lastQueries: 65536 } } },
            status: 400,
            message: /lastQueries must be at most \d+ \(the server's prefill chunk, or its own lastQueries\); got 65536/,
            param: "lighttransfer.hybrid",
          },
          {
            name: "a misspelt hybrid option",
            body: { ...ok, lighttransfer: { hybrid: { mode: "auto", full_layers: 0 } } },
            status: 400,
            message: /hybrid has no option "full_layers"/,
            param: "lighttransfer.hybrid",
          },
          {
            name: "chat messages not an array",
            route: "/v1/chat/completions",
            body: { model: modelName, messages: "hi" },
            status: 400,
            message: /messages/,
          },
          {
            name: "an image part",
            route: "/v1/chat/completions",
            body: {
              model: modelName,
              messages: [
                { role: "user", content: "hi" },
                {
                  role: "user",
                  content: [
                    { type: "text", text: "what is" },
                    { type: "image_url", image_url: { url: "data:," } },
                  ],
                },
              ],
            },
            status: 400,
            message: /^messages\.1\.content: content parts of type "image_url" are not supported by this server \(text parts only\)$/,
            param: "messages.1.content",
            code: "unsupported_parameter",
          },
          {
            name: "a text part without its text",
            route: "/v1/chat/completions",
            body: { model: modelName, messages: [{ role: "user", content: [{ type: "text" }] }] },
            status: 400,
            message: /a text part needs its text/,
            param: "messages.0.content",
          },
          {
            name: "a chat message without content",
            route: "/v1/chat/completions",
            body: { model: modelName, messages: [{ role: "user" }] },
            status: 400,
            message: /content/,
            param: "messages.0.content",
          },
          {
            name: "an oversized body",
            body: { ...ok, prompt: "x".repeat(80 * 1024) },
            status: 413,
            message: /too large/i,
            code: "request_too_large",
          },
          {
            name: "a field of the wrong type",
            body: { ...ok, stream: "yes" },
            status: 400,
            message: /^stream must be boolean/,
            param: "stream",
          },
          { name: "an unknown route", route: "/v1/embeddings", body: ok, status: 404, message: /no route/ },
        ];
        for (const c of cases) {
          const res = await post(server.url, c.route ?? "/v1/completions", c.body);
          const summary = `${c.name}: ${res.status} ${JSON.stringify(res.body)}`;
          expect(summary).toMatch(new RegExp(`^${c.name}: ${c.status} `));
          expect(res.body.error.message).toMatch(c.message);
          expect(typeof res.body.error.type).toBe("string");
          if (c.param !== undefined) expect({ name: c.name, param: res.body.error.param }).toEqual({ name: c.name, param: c.param });
          if (c.code !== undefined) expect({ name: c.name, code: res.body.error.code }).toEqual({ name: c.name, code: c.code });
          expect((await fetch(`${server.url}/health`)).status).toBe(200);
        }
        const wrongType = await post(server.url, "/v1/completions", "prompt=hi", { "content-type": "application/x-www-form-urlencoded" });
        expect([wrongType.status, wrongType.body.error.code]).toEqual([415, "unsupported_media_type"]);
        const asText = await post(server.url, "/v1/completions", JSON.stringify(ok), { "content-type": "text/plain" });
        expect([asText.status, asText.body.error.code]).toEqual([415, "unsupported_media_type"]);
        const notJson = await post(server.url, "/v1/completions", "{ not json");
        expect([notJson.status, notJson.body.error.code]).toEqual([400, "invalid_json"]);
        // The same server still answers a good request.
        const good = await server.client.completions.create({ model: modelName, prompt: "Hello", max_tokens: 2, temperature: 0 });
        expect(good.usage?.completion_tokens).toBeGreaterThan(0);
      },
      { bodyLimit: 64 * 1024, maxContext: 64 },
    );
    await poolEmpties();
  });

  test("a prompt longer than maxContext tokens could stand for is refused before it is tokenized, as context_length_exceeded", async () => {
    const tokenizer = model.tokenizer;
    const maxContext = rng.int(16, 128);
    // llama-tiny's tokens stand for 13 bytes at most ("<|assistant|>"): even 4-fold with a space
    // more, 64 bytes a token is more than maxContext tokens can hold.
    const tokenBytes = Array.from({ length: model.config.vocabSize }, (_, id) => tokenizer.tokenBytes(id).length);
    const longest = Math.max(...tokenBytes);
    expect(4 * (longest + 1)).toBeLessThan(64);
    const text = (bytes: number) => {
      let s = "";
      while (Buffer.byteLength(s) < bytes) s += rng.pick(["a", " ", "é", "\u2603", "\u{1D400}"]);
      return s;
    };
    const encode = jest.spyOn(tokenizer, "encode");
    const encodeAsync = jest.spyOn(tokenizer, "encodeAsync");
    try {
      await withServer(
        async (server) => {
          const tooLong = text(maxContext * rng.int(64, 256));
          const completion = await post(server.url, "/v1/completions", { model: modelName, prompt: tooLong, max_tokens: 1 });
          const messages = [
            { role: "system", content: text(rng.int(0, 100)) },
            { role: "user", content: tooLong },
          ];
          const chat = await post(server.url, "/v1/chat/completions", { model: modelName, messages, max_tokens: 1 });
          for (const [res, param] of [
            [completion, "prompt"],
            [chat, "messages"],
          ] as const) {
            expect(res.status).toBe(400);
            expect(res.body.error).toMatchObject({ param, code: "context_length_exceeded" });
            expect(res.body.error.message).toMatch(new RegExp(`more than maxContext ${maxContext} tokens can hold`));
          }
          expect(encode).not.toHaveBeenCalled();
          expect(encodeAsync).not.toHaveBeenCalled();
          // The bound refuses no prompt that fits: maxContext tokens of the longest text, BOS included.
          const longestToken = tokenizer.decode([tokenBytes.indexOf(longest)]);
          const fits = await server.client.completions.create({
            model: modelName,
            prompt: longestToken.repeat(maxContext - 1),
            max_tokens: 0,
          });
          expect(fits.usage?.prompt_tokens).toBe(maxContext);
        },
        { maxContext },
      );
    } finally {
      encode.mockRestore();
      encodeAsync.mockRestore();
    }
    await poolEmpties();
  });

  test("a long prompt is encoded on the tokenizer's thread, to as many tokens as encode gives, and other requests are answered", async () => {
    const tokenizer = model.tokenizer;
    const words = ["the", "model", "reads", "a", "long", "prompt", "é", "\u2603", "1987,"];
    const text = Array.from({ length: rng.int(4000, 6000) }, () => rng.pick(words)).join(" ");
    const tokens = tokenizer.encode(text).length;
    expect(tokens).toBeGreaterThan(4096);
    const encode = jest.spyOn(tokenizer, "encode");
    try {
      await withServer(async (server) => {
        const long = post(server.url, "/v1/completions", { model: modelName, prompt: text, max_tokens: 1 });
        const models = await fetch(`${server.url}/v1/models`);
        expect(models.status).toBe(200);
        const res = await long;
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({ param: "prompt", code: "context_length_exceeded" });
        expect(res.body.error.message).toMatch(new RegExp(`has ${tokens} tokens: more than maxContext 4096`));
        // The long text went to the tokenizer's thread, not through encode on the server's.
        expect(encode.mock.calls.every(([t]) => t.length < 8192)).toBe(true);
      });
    } finally {
      encode.mockRestore();
    }
  });

  test("OpenAI parameters at their neutral values are accepted and change nothing; top_p 0 is greedy", async () => {
    await withServer(async (server) => {
      const ids = randomIds(rng.int(3, 24));
      const maxTokens = rng.int(1, 16);
      const greedy = await library(ids, { maxNewTokens: maxTokens, temperature: 0 });
      const neutral = {
        logit_bias: rng.pick([{}, null]),
        response_format: rng.pick([{ type: "text" }, null]),
        suffix: rng.pick(["", null]),
        best_of: rng.pick([1, null]),
      };
      const completion = await post(server.url, "/v1/completions", {
        model: modelName,
        prompt: ids,
        max_tokens: maxTokens,
        ...neutral,
        // OpenAI allows top_p 0: only the likeliest token is left, whatever the temperature.
        top_p: 0,
        temperature: 0.5 + rng.next(),
        seed: rng.int(0, 2 ** 31),
      });
      expect({ status: completion.status, text: (completion.body as unknown as OpenAI.Completion).choices?.[0].text }).toEqual({
        status: 200,
        text: greedy.text,
      });
      const messages = [{ role: "user" as const, content: `Say ${rng.int(0, 1000)}` }];
      const chatGreedy = await library(messages, { maxNewTokens: maxTokens, temperature: 0 });
      const chat = await post(server.url, "/v1/chat/completions", {
        model: modelName,
        messages,
        max_tokens: maxTokens,
        temperature: 0,
        logit_bias: neutral.logit_bias,
        response_format: neutral.response_format,
        tools: rng.pick([[], null]),
        tool_choice: rng.pick(["none", null]),
        functions: rng.pick([[], null]),
        function_call: rng.pick(["none", null]),
      });
      expect({
        status: chat.status,
        text: (chat.body as unknown as OpenAI.ChatCompletion).choices?.[0].message.content,
      }).toEqual({ status: 200, text: chatGreedy.text });
    });
    await poolEmpties();
  });

  test.each([
    ["no chat template", undefined, /this model has no chat template \(no chat_template\.jinja, none in tokenizer_config\.json\)\./],
    ["a chat template that does not parse", "{% for m in messages %}{{ m.content }", /chat_template/],
  ])("chat on a model with %s is a 400 that points at completions, and completions still work", async (_, template, why) => {
    const dir = copyFixture(modelName);
    editJson(dir, "tokenizer_config.json", ({ chat_template: _old, ...config }) => ({
      ...config,
      ...(template && { chat_template: template }),
    }));
    const plain = await loadModel(dir, { device: "cpu", kvCacheBytes: 4 * 2 ** 20, pageSize: 4 });
    const server = await start({}, plain);
    try {
      const chat = await post(server.url, "/v1/chat/completions", { model: modelName, messages: [{ role: "user", content: "hi" }] });
      expect(chat.status).toBe(400);
      expect(chat.body.error).toMatchObject({ param: "messages", code: "chat_template_unavailable" });
      expect(chat.body.error.message).toMatch(new RegExp(`^model '${modelName}' cannot render chat messages: `));
      expect(chat.body.error.message).toMatch(why);
      expect(chat.body.error.message).toMatch(/Send its prompt as text to POST \/v1\/completions instead$/);
      const completion = await server.client.completions.create({ model: modelName, prompt: "hi", max_tokens: 2 });
      expect(completion.choices).toHaveLength(1);
    } finally {
      await server.close();
      await plain.dispose();
    }
  });

  test("a seed is any int64, as OpenAI takes it, drawn by its low 32 bits; user may be null", async () => {
    await withServer(async (server) => {
      const low = rng.int(0, 2 ** 31);
      const body = { model: modelName, prompt: "Once upon a time", max_tokens: 12, temperature: 1.5, user: null };
      const draw = async (seed: number | string) => {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          // A literal in the JSON text, as a client in another language sends an int64.
          body: JSON.stringify({ ...body, seed: 0 }).replace('"seed":0', `"seed":${seed}`),
        });
        expect(res.status).toBe(200);
        return ((await res.json()) as OpenAI.Completion).choices[0].text;
      };
      const expected = await draw(low);
      expect(await draw(`${BigInt(low) + 2n ** 40n}`)).toBe(expected);
      expect(await draw(`${BigInt(low) - 2n ** 32n}`)).toBe(expected);
      expect(await draw("4611686018427387904")).toBe(await draw(0));
    });
    await poolEmpties();
  });

  test("a developer message is a system message, as OpenAI takes it", async () => {
    // A template that, as many do, knows only the system, user and assistant roles.
    const dir = copyFixture(modelName);
    editJson(dir, "tokenizer_config.json", (config) => ({
      ...config,
      chat_template:
        "{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + m.role) }}{% endif %}" +
        "<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>",
    }));
    const strict = await loadModel(dir, { device: "cpu", kvCacheBytes: 4 * 2 ** 20, pageSize: 4 });
    const server = await start({}, strict);
    try {
      const instruction = `Answer in ${rng.pick(["French", "verse", "one word"])}`;
      const question = `What is ${rng.int(0, 100)}?`;
      const maxTokens = rng.int(1, 12);
      let expected = "";
      const asSystem = [
        { role: "system", content: instruction },
        { role: "user", content: question },
      ];
      for await (const chunk of strict.generate(asSystem, { maxNewTokens: maxTokens, temperature: 0 })) expected += chunk.text;
      const got = await server.client.chat.completions.create({
        model: modelName,
        messages: [
          { role: "developer", content: instruction },
          { role: "user", content: question },
        ],
        max_tokens: maxTokens,
        temperature: 0,
      });
      expect(got.choices[0].message.content).toBe(expected);
    } finally {
      await server.close();
      await strict.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GET /v1/models/{model} (the openai client's models.retrieve): the model, or 404 model_not_found", async () => {
    // A name with an organization's "/", as the client escapes it and as curl sends it.
    const name = `org-${rng.int(0, 1000)}/${modelName}`;
    await withServer(
      async (server) => {
        const expected = { id: name, object: "model", created: 0, owned_by: "lighttransfer" };
        expect(await server.client.models.retrieve(name)).toEqual(expected);
        expect(await (await fetch(`${server.url}/v1/models/${name}`)).json()).toEqual(expected);
        const other = `other-${rng.int(0, 1000)}`;
        const res = await fetch(`${server.url}/v1/models/${other}`);
        expect(res.status).toBe(404);
        expect(((await res.json()) as { error: unknown }).error).toMatchObject({ param: "model", code: "model_not_found" });
        await expect(server.client.models.retrieve(other)).rejects.toMatchObject({ status: 404, code: "model_not_found" });
      },
      { modelName: name },
    );
  });

  test("32 concurrent streams all complete, each as it does alone, and leave no KV page in use", async () => {
    await withServer(async (server) => {
      const requests: Array<{
        model: string;
        prompt: number[];
        max_tokens: number;
        temperature: number;
        top_p?: number;
        top_k?: number;
        seed?: number;
      }> = [];
      for (let i = 0; i < 32; i++) {
        const sampled = i % 4 === 3;
        const maxTokens = rng.int(1, 24);
        requests.push({
          model: modelName,
          // A greedy request's run alone keeps clear of near-ties, which batching could flip.
          prompt: sampled ? randomIds(rng.int(2, 40)) : await promptWithClearGreedyRun(maxTokens, [2, 40]),
          max_tokens: maxTokens,
          ...(sampled
            ? { temperature: 0.5 + rng.next(), top_p: 0.5 + rng.next() / 2, top_k: rng.int(0, 50), seed: rng.int(0, 2 ** 31) }
            : { temperature: 0 }),
        });
      }
      const run = async (request: (typeof requests)[number]) => {
        const stream = await server.client.completions.create({
          ...request,
          stream: true,
          stream_options: { include_usage: true },
        } as never);
        let text = "";
        let finish: string | null = null;
        let tokens = -1;
        for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) {
          if (chunk.choices.length) {
            text += chunk.choices[0].text;
            finish = chunk.choices[0].finish_reason ?? finish;
          } else tokens = chunk.usage!.completion_tokens;
        }
        return { text, finish, tokens };
      };
      // The batch as /metrics sees it while the streams run: more than one sequence at a time.
      let mostRunning = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) mostRunning = Math.max(mostRunning, await metric(server.url, "lighttransfer_running_sequences"));
      })();
      const together = await Promise.all(requests.map(run)).finally(() => (watching = false));
      await watcher;
      await poolEmpties();
      const alone: Array<Awaited<ReturnType<typeof run>>> = [];
      for (const request of requests) alone.push(await run(request));
      together.forEach((got, i) => expect({ i, ...got }).toEqual({ i, ...alone[i] }));
      for (const got of together) expect(got.finish).not.toBeNull();
      expect(mostRunning).toBeGreaterThan(1);
    });
    await poolEmpties();
  });

  // Hybrid too: the prefill goes on layer by layer, so its policy still cuts each layer in turn.
  test.each([
    ["off", { mode: "off" as const }],
    ["auto", { mode: "auto" as const, fullLayers: 1, sink: 2, window: 10, lastQueries: 6 }],
  ])(
    "a long prompt (hybrid %s) is prefilled a little per turn between the decode steps of a running stream, and gives what one prefill gives",
    async (_, hybrid) => {
      const stepTokens = 8,
        prefillChunk = 16;
      await withServer(
        async (server) => {
          const runningIds = await promptWithoutEos(8);
          // The prefill is the same chunks through the same layers in the same order as alone, bit
          // for bit; the later tokens come from decode steps batched with the running stream, which
          // may differ in their last bits, so the prompt's greedy run keeps clear of ties.
          const longIds = await drawPrompt(
            [120, 200],
            async (ids) => (await smallestGreedyGap(ids, { maxNewTokens: 3, hybrid, prefillChunk })) > clearGreedyGap,
            `kept its top two logits ${clearGreedyGap} apart over 3 greedy tokens`,
          );
          const alone = await library(longIds, { maxNewTokens: 3, temperature: 0, hybrid, prefillChunk });
          const controller = new AbortController();
          // The running stream goes on (past EOS) until the long prompt's answer is in.
          const running = await streamPastEos(server.client, runningIds, 3000, controller.signal);
          let runningChunks = 0;
          let long: Promise<{ text: string; mixedTurns: number }> | undefined;
          const sendLong = async () => {
            // Turns that prefilled and decoded so far (the running stream's own prompt may have given one).
            const mixedBefore = await metric(server.url, 'lighttransfer_step_seconds_count{kind="mixed"}');
            const stream = await server.client.completions.create({
              model: modelName,
              prompt: longIds,
              max_tokens: 3,
              temperature: 0,
              stream: true,
              lighttransfer: { hybrid },
            } as never);
            let text = "";
            for await (const chunk of stream as unknown as AsyncIterable<OpenAI.Completion>) text += chunk.choices[0]?.text ?? "";
            const mixedTurns = (await metric(server.url, 'lighttransfer_step_seconds_count{kind="mixed"}')) - mixedBefore;
            controller.abort();
            return { text, mixedTurns };
          };
          try {
            for await (const _ of running) if (++runningChunks === 2) long = sendLong();
          } catch (err) {
            expect((err as Error).name).toMatch(/Abort/);
          }
          const got = await long!;
          expect(got.text).toBe(alone.text);
          // Beside the running stream's decode step a turn has stepTokens - 1 tokens of budget, each
          // a token through every layer, and overshoots it by less than one unit (a chunk, at most
          // 16 + lastQueries - 1 tokens, through one layer). So the prompt's prefill is spread over
          // at least this many turns that prefilled and decoded (the server counts them); run
          // whole, it would take one.
          const layers = model.config.layers;
          const turns = Math.ceil((longIds.length * layers) / ((stepTokens - 1) * layers + prefillChunk + 5));
          expect({ seed: rng.seed, tokens: longIds.length, enough: got.mixedTurns >= turns }).toEqual({
            seed: rng.seed,
            tokens: longIds.length,
            enough: true,
          });
        },
        { stepTokens, prefillChunk },
      );
      await poolEmpties();
    },
  );

  test("per-request hybrid options (the lighttransfer field) give what a hybrid session gives", async () => {
    await withServer(async (server) => {
      const hybrid = { mode: "auto" as const, fullLayers: 1, sink: 2, window: rng.int(6, 12) };
      // Twelve tokens without EOS, so the step counts below are known.
      const ids = await promptWithoutEos(12, { hybrid }, [30, 60]);
      const expected = await library(ids, { maxNewTokens: 12, temperature: 0, hybrid });
      const got = await server.client.completions.create({
        model: modelName,
        prompt: ids,
        max_tokens: 12,
        temperature: 0,
        lighttransfer: { hybrid },
      } as never);
      expect((got as unknown as OpenAI.Completion).choices[0].text).toBe(expected.text);
      expect(await metric(server.url, "lighttransfer_prompt_tokens_total")).toBe(ids.length);
      // The prompt's turn gives the first token (and may decode the second), then one turn per token.
      const turns = await metric(server.url, "lighttransfer_step_seconds_count");
      expect(turns).toBeGreaterThanOrEqual(11);
      expect(turns).toBeLessThanOrEqual(12);
      expect(await metric(server.url, 'lighttransfer_step_seconds_count{kind="decode"}')).toBeGreaterThanOrEqual(10);
      expect(await metric(server.url, 'lighttransfer_decode_steps{path="eager"}')).toBeGreaterThanOrEqual(11);
      expect(await metric(server.url, "lighttransfer_decode_graph_recordings")).toBe(0);
    });
    await poolEmpties();
  });

  test("the server's prefill chunk: the library's, at most 16384 (512 on the CPU), unless prefillChunk is given", async () => {
    // llama-tiny's library default is the largest chunk (its MLP is small), so the cap shows.
    expect(model.decoder.prefillChunk).toBeGreaterThan(16384);
    expect(model.device).toBe("cpu");
    const chunks: Array<number | undefined> = [];
    const startPrefill = model.decoder.startPrefill.bind(model.decoder);
    const spy = jest.spyOn(model.decoder, "startPrefill").mockImplementation((seq, ids, options) => {
      chunks.push(options?.chunkSize);
      return startPrefill(seq, ids, options);
    });
    try {
      const asked = rng.int(1, 64);
      for (const [options, expected] of [
        [{}, 512],
        [{ prefillChunk: asked }, asked],
      ] as const) {
        chunks.length = 0;
        await withServer(async (server) => {
          await server.client.completions.create({ model: modelName, prompt: randomIds(rng.int(3, 24)), max_tokens: 1, temperature: 0 });
        }, options);
        expect(chunks).toEqual([expected]);
      }
    } finally {
      spy.mockRestore();
    }
    await poolEmpties();
  });

  test("on the CPU a step runs a prompt's prefill a 512-token chunk through one layer at a time (64 step tokens), so requests are answered between", async () => {
    await withServer(async (server) => {
      // Three chunks, the last longer than a step's 64 × 3 token-layers, so no step holds two units.
      const tokens = rng.int(1250, 1530);
      await server.client.completions.create({ model: modelName, prompt: randomIds(tokens), max_tokens: 1, temperature: 0 });
      // Every chunk through every layer is a step of its own: with 512 step tokens and the library's
      // chunk, the whole prompt went through in two.
      expect(await metric(server.url, 'lighttransfer_step_seconds_count{kind="prefill"}')).toBeGreaterThanOrEqual(
        Math.ceil(tokens / 512) * model.config.layers,
      );
    });
    await poolEmpties();
  });

  test("admission's page count is what a prefill really holds at its peak, full and hybrid", async () => {
    for (let round = 0; round < 12; round++) {
      const ids = randomIds(rng.int(1, 90));
      const ring = { sink: rng.int(0, 3), window: rng.int(4, 20) };
      const lazy = Array.from({ length: model.config.layers }, (_, l) => l).filter(() => rng.next() < 0.5);
      // Off, auto (P + 1 full caches at once), and lazy layers that are rings from the start (P).
      const options = [
        { mode: "off" as const },
        { mode: "auto" as const, fullLayers: rng.int(0, 2), ...ring },
        { mode: "streaming-all" as const, prefill: "streaming" as const, ...ring },
        { mode: "fixed" as const, lazyLayers: lazy, prefill: "streaming" as const, ...ring },
        { mode: "fixed" as const, lazyLayers: lazy, ...ring },
      ][rng.int(0, 4)];
      const hybrid = resolveHybrid(options, model.config.layers);
      expect(model.pool.usedPages).toBe(0);
      model.pool.resetHighWater();
      const session = model.createSession({ hybrid: options });
      try {
        for await (const _ of session.generate(ids, { maxNewTokens: 0 }));
      } finally {
        session.dispose();
      }
      const planned = prefillPeakPages(model.config, ids.length, sequenceLayout(hybrid, model.config.layers, 4));
      expect({ options, tokens: ids.length, peak: model.pool.highWaterPages }).toEqual({ options, tokens: ids.length, peak: planned });
    }
  });

  test("when the pool runs out, running sequences are preempted and resumed: none is lost and none fails", async () => {
    // 3 layers of 4-token pages of 64 f32 values (K and V): 2 KiB a page; 60 pages hold about
    // two of these requests at their full length, and a prompt's peak is 15 pages, so admission
    // lets more in than can finish together.
    const small = await loadModel(path.join(fixtureRoot, modelName), { device: "cpu", kvCacheBytes: 60 * 2048, pageSize: 4 });
    const server = await start({}, small);
    try {
      const requests: Array<{ prompt: number[]; max_tokens: number }> = [];
      for (let i = 0; i < 6; i++) {
        const maxTokens = rng.int(50, 60);
        requests.push({ prompt: await promptWithClearGreedyRun(maxTokens, [16, 20]), max_tokens: maxTokens });
      }
      const results = await Promise.all(
        requests.map((r) =>
          server.client.completions.create({ model: modelName, ...r, temperature: 0, lighttransfer: { ignore_eos: true } } as never),
        ),
      );
      for (const [i, res] of results.entries()) {
        const completion = res as unknown as OpenAI.Completion;
        expect(completion.usage?.completion_tokens).toBe(requests[i].max_tokens);
        expect(completion.choices[0].finish_reason).toBe("length");
        // A preempted sequence re-prefills its tokens and goes on as if nothing happened.
        const alone = await library(requests[i].prompt, { maxNewTokens: requests[i].max_tokens, temperature: 0, stopAtEos: false });
        expect(completion.choices[0].text).toBe(alone.text);
      }
      expect(await metric(server.url, "lighttransfer_preemptions_total")).toBeGreaterThan(0);
      expect(small.pool.usedPages).toBe(0);
    } finally {
      await server.close();
      await small.dispose();
    }
  });

  test.each<[ServerOptions, RegExp]>([
    [{ maxQueue: 0 }, /createServer: maxQueue must be an integer in \[1, /],
    [{ maxRunning: 0 }, /createServer: maxRunning must be an integer in \[1, /],
    [{ modelName: "" }, /createServer: modelName must be a non-empty string/],
    [{ modelNam: "x" } as ServerOptions, /createServer: options has no option "modelNam"; its options are modelName, /],
  ])("createServer(%j) is refused with what is wrong", async (options, message) => {
    await expect(createServer(model, options)).rejects.toThrow(message);
  });

  test("a full queue answers 429 with an OpenAI error body; the others complete", async () => {
    const maxQueue = 2;
    await withServer(
      async (server) => {
        // A stream that holds the one running slot (past EOS, far longer than the requests below
        // take to arrive) until the queue has been seen full.
        const controller = new AbortController();
        const busy = await streamPastEos(server.client, randomIds(4), 4000, controller.signal);
        const busyChunks = busy[Symbol.asyncIterator]();
        await busyChunks.next();
        let busyFinished: string | null = null;
        const busyRuns = (async () => {
          try {
            for (let r = await busyChunks.next(); !r.done; r = await busyChunks.next())
              busyFinished = r.value.choices[0]?.finish_reason ?? busyFinished;
          } catch (err) {
            expect((err as Error).name).toMatch(/Abort/);
          }
        })();
        const statuses: number[] = [];
        const pending = Array.from({ length: 10 }, () =>
          post(server.url, "/v1/completions", { model: modelName, prompt: randomIds(4), max_tokens: 8, temperature: 0 }).then((r) => {
            statuses.push(r.status);
            return r;
          }),
        );
        // Those beyond the queue's room are answered at once; the queued ones wait for the slot.
        for (let i = 0; i < 500 && statuses.length < 10 - maxQueue; i++) await new Promise((r) => setTimeout(r, 10));
        expect(busyFinished).toBeNull();
        controller.abort();
        await busyRuns;
        const responses = await Promise.all(pending);
        expect(responses.map((r) => r.status).sort()).toEqual([...Array(maxQueue).fill(200), ...Array(10 - maxQueue).fill(429)]);
        for (const r of responses.filter((x) => x.status === 429))
          expect(r.body.error).toMatchObject({ type: "rate_limit_error", code: "queue_full" });
        expect((await fetch(`${server.url}/health`)).status).toBe(200);
      },
      { maxQueue, maxRunning: 1 },
    );
    await poolEmpties();
  });

  test("load on loopback (autocannon, a few seconds): no errors, every response 200; requests/s and latency reported", async () => {
    await withServer(async (server) => {
      const result = await autocannon({
        url: `${server.url}/v1/completions`,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: modelName, prompt: randomIds(rng.int(4, 16)), max_tokens: 4, temperature: 0 }),
        connections: 8,
        duration: 3,
      });
      console.log(
        `serve load: ${result.requests.average.toFixed(1)} requests/s, latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ` +
          `${result.requests.total} requests, ${result.errors} errors, ${result.non2xx} non-2xx`,
      );
      expect(result.errors).toBe(0);
      expect(result.timeouts).toBe(0);
      expect(result.non2xx).toBe(0);
      expect(result.requests.total).toBeGreaterThan(0);
    });
    await poolEmpties();
  });
});
