import { describe, expect, it } from "vitest";
import { wkdHash } from "../src/mail/keys";

describe("Web Key Directory hashes", () => {
  it("match the specification's example (draft-koch-openpgp-webkey-service)", async () => {
    expect(await wkdHash("Joe.Doe")).toBe("iy9q119eutrkn8s1mk4r39qejnbu3n5q");
  });
});
