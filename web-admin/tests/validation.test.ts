import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { brandColor, contrast, domainName, emailAddress, password } from "../src/validate";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8")) as Record<string, { valid: string[]; invalid: string[] }>;
const checks = { domain: domainName, email: emailAddress, password, color: brandColor("primary_color") };

describe("client-side checks agree with the API's vectors", () => {
  for (const [kind, check] of Object.entries(checks)) {
    for (const value of vectors[kind]!.valid) {
      it(`${kind}: accepts ${JSON.stringify(value)}`, () => expect(check(value)).toBeNull());
    }
    for (const value of vectors[kind]!.invalid) {
      it(`${kind}: refuses ${JSON.stringify(value)}`, () => expect(check(value)).toEqual(expect.any(String)));
    }
  }
});

describe("wording", () => {
  it("names the field and the value like the API does", () => {
    expect(domainName("-bad.example")).toBe("`-bad.example` is not a valid domain name: a label cannot start or end with a hyphen");
    expect(emailAddress("alice")).toBe("`alice` is not an email address: it has no `@`");
    expect(password("short")).toBe("the password must be at least 10 characters long");
    expect(brandColor("accent_color")("#777777")).toMatch(/^`accent_color` #777777 has a contrast of 4\.48:1 with white/);
  });
  it("computes WCAG contrast", () => {
    expect(contrast("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrast("#ffffff", "#ffffff")).toBeCloseTo(1, 5);
    expect(contrast("nope", "#ffffff")).toBeNull();
  });
});
