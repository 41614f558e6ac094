import { describe, expect, it } from "vitest";
import { strength } from "../src/mail/strength";

describe("password strength", () => {
  it("grows with length and variety, and sees through common words", () => {
    expect(strength("short")).toBe("too_short");
    expect(strength("aaaaaaaaaaaa")).toBe("weak");
    expect(strength("password1234")).toBe("weak");
    expect(strength("correct horse battery staple")).toBe("strong");
  });
});
