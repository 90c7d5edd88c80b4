// The demo model's token embeddings by corpus frequency, and those of lib/eval's key words (run from the
// repository root after `npm run build`: node bench/results/quality-recipes-2026-12-03-h200-s26/embedding-norms.mjs models/demo).
import fs from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { Tokenizer } = require("@huggingface/tokenizers");
const { brownCorpus } = require(process.cwd() + "/dist/lib/eval/corpus.js");
const { keyWords } = require(process.cwd() + "/dist/lib/eval/tasks.js");
const dir = process.argv[2];
const buf = fs.readFileSync(`${dir}/model.safetensors`);
const n = Number(buf.readBigUInt64LE(0)); const h = JSON.parse(buf.subarray(8, 8 + n).toString());
const e = h["model.embed_tokens.weight"]; const [V, D] = e.shape; const off = 8 + n + e.data_offsets[0];
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const norms = new Float64Array(V);
for (let i = 0; i < V; i++) { let s = 0; for (let j = 0; j < D; j++) { u32[0] = buf.readUInt16LE(off + 2 * (i * D + j)) << 16; s += f32[0] * f32[0]; } norms[i] = Math.sqrt(s); }
const tok = new Tokenizer(JSON.parse(fs.readFileSync(`${dir}/tokenizer.json`, "utf8")), JSON.parse(fs.readFileSync(`${dir}/tokenizer_config.json`, "utf8")));
const enc = (t) => tok.encode(t, { add_special_tokens: false }).ids;
const corpus = brownCorpus();
const freq = new Float64Array(V);
for (const doc of corpus.filler) for (const id of enc(" " + doc.join(" "))) freq[id]++;
const keys = keyWords(corpus);
const keyTok = new Set(); const oneTok = [];
for (const w of keys) { const ids = enc(" " + w); ids.forEach((i) => keyTok.add(i)); if (ids.length === 1) oneTok.push(ids[0]); }
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const all = [...Array(V).keys()].filter((i) => freq[i] > 0);
const byFreq = [[1, 10], [10, 100], [100, 1000], [1000, 1e9]];
console.log(dir, "tokens", V, "used", all.length);
for (const [lo, hi] of byFreq) { const s = all.filter((i) => freq[i] >= lo && freq[i] < hi); console.log(`corpus count ${lo}-${hi}: ${s.length} tokens, median norm ${median(s.map((i) => norms[i])).toFixed(3)}`); }
const kt = [...keyTok]; console.log(`key-word tokens: ${kt.length}, median norm ${median(kt.map((i) => norms[i])).toFixed(3)}, median count ${median(kt.map((i) => freq[i]))}`);
console.log(`one-token keys: ${oneTok.length}, median norm ${median(oneTok.map((i) => norms[i])).toFixed(3)}, median count ${median(oneTok.map((i) => freq[i]))}`);
const unused = [...Array(V).keys()].filter((i) => freq[i] === 0); console.log(`tokens never in the filler: ${unused.length}, median norm ${unused.length ? median(unused.map((i) => norms[i])).toFixed(3) : "-"}`);
// pairwise cosine among one-token keys (sample)
const rowv = (i) => { const r = new Float64Array(D); for (let j = 0; j < D; j++) { u32[0] = buf.readUInt16LE(off + 2 * (i * D + j)) << 16; r[j] = f32[0]; } return r; };
const cos = (a, b) => { let s = 0, na = 0, nb = 0; for (let j = 0; j < D; j++) { s += a[j] * b[j]; na += a[j] ** 2; nb += b[j] ** 2; } return s / Math.sqrt(na * nb); };
const sample = oneTok.slice(0, 200).map(rowv); const cs = [];
for (let a = 0; a < sample.length; a++) for (let b = a + 1; b < sample.length; b++) cs.push(cos(sample[a], sample[b]));
console.log(`cosine between one-token keys: median ${median(cs).toFixed(3)}, mean ${(cs.reduce((s, x) => s + x, 0) / cs.length).toFixed(3)}`);
