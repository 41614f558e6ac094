import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { leadingZeroBits, search, sha256 } from "../src/mail/pow";

const hex = (words: Uint32Array) => Array.from(words, (w) => w.toString(16).padStart(8, "0")).join("");

describe("the signup's proof of work", () => {
  it("hashes like SHA-256, across block boundaries", () => {
    for (const length of [0, 1, 55, 56, 63, 64, 65, 119, 120, 200]) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 31 + 7) & 0xff);
      expect(hex(sha256(bytes))).toBe(createHash("sha256").update(bytes).digest("hex"));
    }
  });

  it("finds a counter the server's definition accepts, with the address in lower case", () => {
    const challenge = "v1.1900000000.12.bm9uY2U.bWFj";
    const counter = search(challenge, "Alice@Free.Example", 12, 0, 1_000_000);
    expect(counter).not.toBeNull();
    const digest = createHash("sha256").update(`${challenge}:alice@free.example:${counter}`).digest();
    const zeros = digest.readUInt32BE(0) === 0 ? 32 : Math.clz32(digest.readUInt32BE(0));
    expect(zeros).toBeGreaterThanOrEqual(12);
    // And it is the first one: none before it passes.
    for (let c = 0; c < counter!; c++) {
      const d = createHash("sha256").update(`${challenge}:alice@free.example:${c}`).digest();
      expect(Math.clz32(d.readUInt32BE(0))).toBeLessThan(12);
    }
  });

  it("counts leading zero bits past the first word", () => {
    expect(leadingZeroBits(Uint32Array.from([0, 0x0fffffff, 0, 0, 0, 0, 0, 0]))).toBe(36);
    expect(leadingZeroBits(Uint32Array.from([0x80000000, 0, 0, 0, 0, 0, 0, 0]))).toBe(0);
  });
});
