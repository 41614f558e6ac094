// Recipients' keys the page can find before sending: those of accounts
// hosted here, through this server's Web Key Directory (the advanced layout
// names the domain in the path, so one origin answers for every hosted
// domain). Keys elsewhere are looked up by the server when it sends (WKD of
// the recipient's domain); asking it beforehand needs an API (NEEDS.md §4).

const ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769";

export function zbase32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ZBASE32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ZBASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/** The WKD hash of a local part: z-base-32 of SHA-1 of it in lower case. */
export async function wkdHash(local: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(local.toLowerCase()));
  return zbase32(new Uint8Array(digest));
}

import type { PublicKey } from "openpgp";

export type KeyStatus = { kind: "hosted"; fingerprint: string; key: PublicKey } | { kind: "unknown" };

/** Whether `address` has a key this server publishes, and its fingerprint. */
export async function lookUpKey(address: string): Promise<KeyStatus> {
  const at = address.lastIndexOf("@");
  if (at < 1) return { kind: "unknown" };
  const local = address.slice(0, at);
  const domain = address.slice(at + 1).toLowerCase();
  const url = `/.well-known/openpgpkey/${encodeURIComponent(domain)}/hu/${await wkdHash(local)}?l=${encodeURIComponent(local)}`;
  const response = await fetch(url);
  if (!response.ok) return { kind: "unknown" };
  const openpgp = await import("openpgp");
  const key = await openpgp.readKey({ binaryKey: new Uint8Array(await response.arrayBuffer()) });
  // A directory answers for the address asked, or not at all.
  const names = key.getUserIDs().map((u) => u.toLowerCase());
  if (!names.some((u) => u.includes(`<${address.toLowerCase()}>`) || u === address.toLowerCase())) return { kind: "unknown" };
  return { kind: "hosted", fingerprint: key.getFingerprint().toUpperCase(), key };
}
