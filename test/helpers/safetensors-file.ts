// Safetensors files written byte by byte for the reader's tests, wrong on purpose where a test asks.
import * as fs from "node:fs";

export interface SafetensorsLayout {
  /** Spaces after the header's JSON, counted in the header length. */
  pad?: number;
  /** The header length the prefix states, instead of the true one. */
  length?: number;
  /** Added to the header length the prefix states. */
  lengthDelta?: number;
}

/**
 * Writes `file`: the 8-byte little-endian header length, the header (an object as JSON, or the
 * text or bytes given) and `data`.
 * @example writeSafetensors(file, { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4), { lengthDelta: -2 });
 */
export function writeSafetensors(
  file: string,
  header: object | string | Buffer,
  data: Buffer,
  { pad = 0, length, lengthDelta = 0 }: SafetensorsLayout = {},
): string {
  const text = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const json = Buffer.concat([text, Buffer.alloc(pad, " ")]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt((length ?? json.length) + lengthDelta));
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]));
  return file;
}
