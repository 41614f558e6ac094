// Messages written as MIME in this browser: drafts as they are saved in
// Drafts, and, for accounts at `end-to-end`, messages encrypted here before
// they are submitted, their headers protected inside the encryption
// (Subject, From, To, Cc; the outside Subject is `...`), wrapped as PGP/MIME
// (RFC 3156) and submitted as `message/rfc822`.
import type { PrivateKey, PublicKey } from "openpgp";

export interface Outgoing {
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  text: string;
  attachments: { filename: string; mimeType: string; bytes: Uint8Array }[];
  /** The answered message's `Message-ID`, and the conversation's, oldest first. */
  inReplyTo?: string | null;
  references?: string[];
}

/** In-Reply-To and References: inside the encryption and outside (mail clients thread on the outer ones). */
function threadHeaders(message: Outgoing): string[] {
  return [
    ...(message.inReplyTo ? [`In-Reply-To: ${message.inReplyTo}`] : []),
    ...(message.references?.length ? [`References: ${message.references.join(`${CRLF} `)}`] : []),
  ];
}

const CRLF = "\r\n";

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** Base64 in lines of 76 characters, as MIME wants. */
function wrapped(bytes: Uint8Array): string {
  return (base64(bytes).match(/.{1,76}/g) ?? []).join(CRLF);
}

/** A header value as RFC 2047 encoded-words when it is not plain ASCII. */
export function encodeWords(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  const encoder = new TextEncoder();
  const words: string[] = [];
  let chunk = "";
  for (const char of value) {
    if (encoder.encode(chunk + char).length > 45) {
      words.push(chunk);
      chunk = "";
    }
    chunk += char;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?utf-8?B?${base64(encoder.encode(w))}?=`).join(`${CRLF} `);
}

/** A file name for a header parameter: quoted, or RFC 2231 when it is not plain ASCII. */
function filenameParameter(name: string, parameter: string): string {
  if (/^[\x20-\x7e]*$/.test(name)) return `${parameter}="${name.replace(/["\\]/g, "_")}"`;
  return `${parameter}*=utf-8''${encodeURIComponent(name)}`;
}

function boundary(): string {
  return `=_${crypto.randomUUID().replace(/-/g, "")}`;
}

/** The MIME entity that is encrypted: the body, the attachments, and the real headers. */
export function innerEntity(message: Outgoing, date: string, messageId: string): string {
  return entity(message, date, messageId, true);
}

/** The whole message in clear, as a draft is kept (sealed by the server at `sealed` and above). */
export function plainMessage(message: Outgoing): string {
  const domain = message.from.split("@").pop() ?? "localhost";
  return entity(message, new Date().toUTCString().replace("GMT", "+0000"), `<${crypto.randomUUID()}@${domain}>`, false);
}

function entity(message: Outgoing, date: string, messageId: string, protectedHeaders: boolean): string {
  const mixed = boundary();
  const headers = [
    ...(protectedHeaders ? [] : ["MIME-Version: 1.0"]),
    `Content-Type: multipart/mixed; boundary="${mixed}"${protectedHeaders ? '; protected-headers="v1"' : ""}`,
    `Subject: ${encodeWords(message.subject)}`,
    `From: ${message.from}`,
    ...(message.to.length ? [`To: ${message.to.join(", ")}`] : []),
    ...(message.cc.length ? [`Cc: ${message.cc.join(", ")}`] : []),
    ...(!protectedHeaders && message.bcc.length ? [`Bcc: ${message.bcc.join(", ")}`] : []),
    `Date: ${date}`,
    `Message-ID: ${messageId}`,
    ...threadHeaders(message),
  ];
  const parts = [
    [`Content-Type: text/plain; charset=utf-8`, `Content-Transfer-Encoding: base64`, "", wrapped(new TextEncoder().encode(message.text.replace(/\r?\n/g, CRLF)))].join(CRLF),
    ...message.attachments.map((a) =>
      [
        `Content-Type: ${a.mimeType}; ${filenameParameter(a.filename, "name")}`,
        `Content-Disposition: attachment; ${filenameParameter(a.filename, "filename")}`,
        `Content-Transfer-Encoding: base64`,
        "",
        wrapped(a.bytes),
      ].join(CRLF),
    ),
  ];
  return [...headers, "", ...parts.map((p) => `--${mixed}${CRLF}${p}`), `--${mixed}--`, ""].join(CRLF);
}

/**
 * The whole message to submit: PGP/MIME encrypted to `keys` (every
 * recipient's and the sender's own, so the Sent copy stays readable),
 * signed with `signingKey` when it is unlocked.
 */
export async function encryptedMessage(message: Outgoing, keys: PublicKey[], signingKey: PrivateKey | null): Promise<string> {
  const openpgp = await import("openpgp");
  const date = new Date().toUTCString().replace("GMT", "+0000");
  const domain = message.from.split("@").pop() ?? "localhost";
  const messageId = `<${crypto.randomUUID()}@${domain}>`;
  const inner = innerEntity(message, date, messageId);
  const armored = await openpgp.encrypt({
    message: await openpgp.createMessage({ text: inner, format: "binary" }),
    encryptionKeys: keys,
    ...(signingKey ? { signingKeys: signingKey } : {}),
  });
  const outer = boundary();
  return [
    `From: ${message.from}`,
    ...(message.to.length ? [`To: ${message.to.join(", ")}`] : []),
    ...(message.cc.length ? [`Cc: ${message.cc.join(", ")}`] : []),
    ...(message.bcc.length ? [`Bcc: ${message.bcc.join(", ")}`] : []),
    `Subject: ...`,
    `Date: ${date}`,
    `Message-ID: ${messageId}`,
    ...threadHeaders(message),
    `MIME-Version: 1.0`,
    `Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="${outer}"`,
    "",
    `--${outer}`,
    `Content-Type: application/pgp-encrypted`,
    `Content-Description: PGP/MIME version identification`,
    "",
    "Version: 1",
    "",
    `--${outer}`,
    `Content-Type: application/octet-stream; name="encrypted.asc"`,
    `Content-Description: OpenPGP encrypted message`,
    `Content-Disposition: inline; filename="encrypted.asc"`,
    "",
    String(armored).replace(/\r?\n/g, CRLF).trimEnd(),
    "",
    `--${outer}--`,
    "",
  ].join(CRLF);
}
