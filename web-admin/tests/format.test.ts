import { afterEach, describe, expect, it, vi } from "vitest";
import { formatBytes, formatDays, setLanguage } from "../src/i18n";

// setLanguage remembers the choice and sets <html lang>: neither exists under node.
vi.stubGlobal("localStorage", { getItem: () => null, setItem: () => {} });
vi.stubGlobal("document", { documentElement: { lang: "" } });

describe("sizes in the current language", () => {
  afterEach(() => setLanguage("en"));
  it("in English", () => {
    setLanguage("en");
    expect(formatBytes(0)).toBe("0 bytes");
    expect(formatBytes(512)).toBe("512 bytes");
    expect(formatBytes(1_500_000)).toBe("1.5 MB");
    expect(formatBytes(42_000_000_000)).toBe("42 GB");
    expect(formatBytes(2 ** 50)).toBe("Unlimited");
  });
  it("in French, with French units", () => {
    setLanguage("fr");
    expect(formatBytes(512)).toMatch(/^512\soctets$/);
    expect(formatBytes(1_500_000)).toMatch(/^1,5\sMo$/);
    expect(formatBytes(42_000_000_000)).toMatch(/^42\sGo$/);
    expect(formatBytes(2 ** 50)).toBe("Illimité");
  });
});

describe("days from today in words", () => {
  afterEach(() => setLanguage("en"));
  it("in English", () => {
    setLanguage("en");
    expect(formatDays(12)).toBe("in 12 days");
    expect(formatDays(1)).toBe("tomorrow");
    expect(formatDays(0)).toBe("today");
    expect(formatDays(-3)).toBe("3 days ago");
  });
  it("in French", () => {
    setLanguage("fr");
    expect(formatDays(12)).toMatch(/^dans 12\sjours$/);
    expect(formatDays(-3)).toMatch(/^il y a 3\sjours$/);
  });
});
