// A stored message made readable on this device: `standard` mail is parsed
// as the server stored it; sealed mail (PGP/MIME, RFC 3156) is decrypted
// here with the unlocked key and its protected headers (Subject, From, To,
// Date) shown instead of the wrapper's. Nothing decrypted leaves memory.
import PostalMime from "postal-mime";
import type { Address, Email } from "postal-mime";
import type { PrivateKey } from "openpgp";

export interface Attachment {
  filename: string;
  mimeType: string;
  bytes: Uint8Array;
  contentId: string | null;
  /** Shown in the body (an image the HTML refers to by `cid:`), not listed. */
  inline: boolean;
}

export interface Reading {
  subject: string;
  from: string;
  fromAddress: string;
  to: string[];
  cc: string[];
  replyTo: string[];
  date: string | null;
  messageId: string | null;
  inReplyTo: string | null;
  references: string | null;
  text: string | null;
  html: string | null;
  attachments: Attachment[];
  /** Decrypted here: the server holds only the ciphertext. */
  decrypted: boolean;
}

const ARMOR = /-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/;

export function formatAddress(a: Address): string[] {
  if (a.group) return a.group.flatMap(formatAddress);
  return [a.name && a.name !== a.address ? `${a.name} <${a.address}>` : a.address];
}

/** Bare addresses out of `Name <a@b>` strings. */
export function bareAddress(text: string): string {
  const m = /<([^>]+)>/.exec(text);
  return (m ? m[1]! : text).trim();
}

function header(email: Email, key: string): string {
  return email.headers.find((h) => h.key === key)?.value ?? "";
}

function bytesOf(content: ArrayBuffer | Uint8Array | string): Uint8Array {
  if (typeof content === "string") return new TextEncoder().encode(content);
  return content instanceof Uint8Array ? content : new Uint8Array(content);
}

/** The armored OpenPGP message a PGP/MIME wrapper carries, or null when it is not one. */
export function encryptedPayload(email: Email, raw: Uint8Array): string | null {
  const type = header(email, "content-type").toLowerCase();
  if (type.startsWith("multipart/encrypted")) {
    for (const part of email.attachments) {
      const text = new TextDecoder().decode(bytesOf(part.content));
      const found = ARMOR.exec(text);
      if (found) return found[0];
    }
  }
  // Inline OpenPGP (the whole body armored), as some clients send end-to-end mail.
  const body = email.text ?? "";
  const inline = ARMOR.exec(body);
  if (inline && body.trim().startsWith("-----BEGIN PGP MESSAGE-----")) return inline[0];
  if (type.startsWith("multipart/encrypted")) {
    const found = ARMOR.exec(new TextDecoder().decode(raw));
    if (found) return found[0];
  }
  return null;
}

function reading(email: Email, decrypted: boolean): Reading {
  const from = email.from ? formatAddress(email.from) : [];
  const fromAddress = email.from && !email.from.group ? email.from.address : "";
  const visible = email.attachments.filter((a) => a.mimeType !== "application/pgp-signature" && a.mimeType !== "application/pgp-encrypted");
  return {
    subject: email.subject ?? "",
    from: from[0] ?? "",
    fromAddress,
    to: (email.to ?? []).flatMap(formatAddress),
    cc: (email.cc ?? []).flatMap(formatAddress),
    replyTo: (email.replyTo ?? []).flatMap(formatAddress),
    date: email.date ?? null,
    messageId: email.messageId ?? null,
    inReplyTo: email.inReplyTo ?? null,
    references: email.references ?? null,
    text: email.text ?? null,
    html: email.html ?? null,
    attachments: visible.map((a, i) => ({
      filename: a.filename || `attachment-${i + 1}`,
      mimeType: a.mimeType,
      bytes: bytesOf(a.content),
      contentId: a.contentId ? a.contentId.replace(/^<|>$/g, "") : null,
      inline: Boolean(a.contentId && a.related),
    })),
    decrypted,
  };
}

/** Layers of encryption opened at most: the seal, and one its sender put inside. */
const MAX_LAYERS = 3;

/**
 * Parses `raw` and, when it is sealed, decrypts it with the key `unlock`
 * gives (asked only then). A message its sender had encrypted, sealed again
 * on arrival (the server seals whatever arrives at `sealed`, so that even
 * its outer headers are not kept readable), is opened layer after layer.
 */
export async function readMessage(raw: Uint8Array, unlock: () => Promise<PrivateKey>, layer = 1): Promise<Reading> {
  const outer = await PostalMime.parse(raw, { attachmentEncoding: "arraybuffer" });
  const armored = encryptedPayload(outer, raw);
  if (!armored) return reading(outer, false);
  const openpgp = await import("openpgp");
  const message = await openpgp.readMessage({ armoredMessage: armored });
  const { data } = await openpgp.decrypt({ message, decryptionKeys: await unlock(), format: "binary" });
  const inner = await PostalMime.parse(data as Uint8Array, { attachmentEncoding: "arraybuffer" });
  if (layer < MAX_LAYERS && header(inner, "content-type") && encryptedPayload(inner, data as Uint8Array)) {
    return readMessage(data as Uint8Array, unlock, layer + 1);
  }
  // Inline OpenPGP carries only a body: the wrapper's headers are the message's.
  if (!header(inner, "content-type") && inner.headers.length === 0) {
    return { ...reading(outer, true), text: new TextDecoder().decode(data as Uint8Array), html: null };
  }
  const result = reading(inner, true);
  // Headers the inner part does not protect are the wrapper's (RFC 9788: the outer ones apply).
  return {
    ...result,
    from: result.from || reading(outer, false).from,
    fromAddress: result.fromAddress || reading(outer, false).fromAddress,
    to: result.to.length ? result.to : reading(outer, false).to,
    date: result.date ?? outer.date ?? null,
    messageId: result.messageId ?? outer.messageId ?? null,
    inReplyTo: result.inReplyTo ?? outer.inReplyTo ?? null,
    references: result.references ?? outer.references ?? null,
  };
}
