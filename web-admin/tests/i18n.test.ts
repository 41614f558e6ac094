import { describe, expect, it } from "vitest";
import { en } from "../src/locales/en";
import { fr } from "../src/locales/fr";

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("French and English", () => {
  it("have the same keys", () => {
    expect(Object.keys(fr).sort()).toEqual(Object.keys(en).sort());
  });
  for (const key of Object.keys(en) as (keyof typeof en)[]) {
    it(`${key}: same placeholders, not empty`, () => {
      expect(placeholders(fr[key])).toEqual(placeholders(en[key]));
      expect(fr[key].trim()).not.toBe("");
    });
  }
  it("never name the software: the brand does", () => {
    for (const text of [...Object.values(en), ...Object.values(fr)]) expect(text).not.toMatch(/caliop/i);
  });
});
