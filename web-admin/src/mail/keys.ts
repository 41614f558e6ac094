// Recipients' keys as sending would find them (POST
// /v1/accounts/{id}/recipient-keys): an account hosted here, or what the
// recipient domain's Web Key Directory serves, fetched by the server. The
// page shows them per recipient and, at `end-to-end`, encrypts to them.
import type { PublicKey } from "openpgp";
import { type Schemas, api, call } from "../api";

export type KeyStatus =
  | { kind: "found"; source: Schemas["KeySource"]; fingerprint: string; key: PublicKey }
  | { kind: "none" };

/** Each address's key status, in a map keyed by the address in lower case. */
export async function lookUpKeys(accountId: string, addresses: string[]): Promise<Map<string, KeyStatus>> {
  const found = new Map<string, KeyStatus>();
  if (addresses.length === 0) return found;
  const answer = await call(api.POST("/v1/accounts/{account_id}/recipient-keys", { params: { path: { account_id: accountId } }, body: { addresses } }));
  const openpgp = await import("openpgp");
  await Promise.all(
    answer.keys.map(async (entry) => {
      const address = entry.address.toLowerCase();
      if (!entry.key || !entry.source) {
        found.set(address, { kind: "none" });
        return;
      }
      try {
        const key = await openpgp.readKey({ armoredKey: entry.key });
        found.set(address, { kind: "found", source: entry.source, fingerprint: key.getFingerprint().toUpperCase(), key });
      } catch {
        found.set(address, { kind: "none" });
      }
    }),
  );
  return found;
}
