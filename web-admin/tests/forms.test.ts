import { describe, expect, it } from "vitest";
import { asTree } from "../src/tree";
import { problemField } from "../src/ui";

describe("problem details land next to the right field", () => {
  const values = { address: "carol@other.example", password: "x", name: "" };
  it("by the field named in backquotes", () => {
    expect(problemField("`password` is too short", values)).toBe("password");
  });
  it("by an alias the form gives", () => {
    expect(problemField("`display_name` is wrong", { display: "" }, { display: ["display_name"] })).toBe("display");
  });
  it("by the value that was typed", () => {
    expect(problemField("`carol@other.example` is not an email address: it has no `@`", values)).toBe("address");
  });
  it("by a word of the alias list", () => {
    expect(problemField("the domain `other.example` is not hosted by this tenant", { address: "carol@other.example" }, { address: ["domain"] })).toBe("address");
  });
  it("or nowhere: the form shows it above the button", () => {
    expect(problemField("wrong address or password", { email: "a@b.example" })).toBeNull();
  });
});

describe("the export form's problems", () => {
  // The API's words, from api/src/routes/exports.rs.
  const passphrase = { passphrase: "too short", passphrase_again: "too short" };
  const key = { openpgp_public_key: "not a key" };
  const keyAliases = { openpgp_public_key: ["passphrase", "OpenPGP"] };
  it("a short passphrase, next to the passphrase", () => {
    expect(problemField("`passphrase` must be at least 12 characters long", passphrase)).toBe("passphrase");
  });
  it("anything about the recipient, next to the key when a key is used", () => {
    expect(problemField("`openpgp_public_key` is not an armored OpenPGP public key: bad armor", key, keyAliases)).toBe("openpgp_public_key");
    expect(problemField("give a `passphrase` or an `openpgp_public_key` to encrypt the archive to", key, keyAliases)).toBe("openpgp_public_key");
  });
  it("the operator's own tenant, above the button", () => {
    const detail = "the operator tenant is the instance itself: export its customer tenants instead";
    expect(problemField(detail, passphrase)).toBeNull();
    expect(problemField(detail, key, keyAliases)).toBeNull();
  });
});

describe("the tenant tree", () => {
  it("puts children under their parent, by name, depth-first", () => {
    const rows = asTree([
      { id: "c", name: "Zeta", parent_id: "r" },
      { id: "r", name: "Reseller", parent_id: "op" },
      { id: "op", name: "Operator", parent_id: null },
      { id: "a", name: "Acme", parent_id: "r" },
      { id: "e", name: "Enterprise", parent_id: "op" },
      { id: "orphan", name: "Orphan", parent_id: "gone" },
    ]);
    expect(rows.map((r) => `${r.depth}:${r.tenant.name}`)).toEqual(["0:Operator", "1:Enterprise", "1:Reseller", "2:Acme", "2:Zeta", "0:Orphan"]);
  });
});
