// What a reply, a reply to all, a forward or a saved draft starts with, from
// the message as read on this device; and recipients typed as one
// comma-separated line.
import { bareAddress, type Reading } from "./reading";

export type Mode = "new" | "reply" | "all" | "forward" | "draft";

export interface Draft {
  to: string;
  cc: string;
  subject: string;
  text: string;
  /** Parts of the original a forward carries along. */
  attachments: { filename: string; mimeType: string; bytes: Uint8Array }[];
  /** The `Message-ID` this answers (`<id@host>`), so that the reply threads. */
  inReplyTo: string | null;
  /** The conversation's `Message-ID`s, oldest first, the answered one last. */
  references: string[];
}

/** The `<id@host>` message ids in a header's value, in order, without duplicates. */
export function messageIds(value: string | null | undefined): string[] {
  const ids: string[] = [];
  for (const m of (value ?? "").matchAll(/<[^<>\s]+>/g)) if (!ids.includes(m[0])) ids.push(m[0]);
  if (ids.length === 0 && value?.trim() && !/[<>\s]/.test(value.trim())) ids.push(`<${value.trim()}>`);
  return ids;
}

/** In-Reply-To and References for an answer to `original` (RFC 5322 §3.6.4). */
export function threading(original: Pick<Reading, "messageId" | "inReplyTo" | "references">): { inReplyTo: string | null; references: string[] } {
  const answered = messageIds(original.messageId)[0] ?? null;
  // Without References, the original's In-Reply-To starts the chain.
  const before = messageIds(original.references).length ? messageIds(original.references) : messageIds(original.inReplyTo).slice(0, 1);
  const references = answered ? [...before.filter((id) => id !== answered), answered] : before;
  return { inReplyTo: answered, references };
}

/** Addresses out of `a@b, Name <c@d>; e@f`, without duplicates (case-insensitive). */
export function recipients(line: string): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const piece of line.split(/[,;\n]/)) {
    const address = bareAddress(piece);
    if (!address) continue;
    const key = address.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(address);
  }
  return out;
}

function prefixed(prefix: string, subject: string): string {
  return new RegExp(`^${prefix}:`, "i").test(subject.trim()) ? subject.trim() : `${prefix}: ${subject.trim()}`;
}

function quoted(text: string): string {
  return text.replace(/\r\n/g, "\n").split("\n").map((l) => (l.startsWith(">") ? `>${l}` : `> ${l}`)).join("\n");
}

/** The plain text of a message read here, for quoting (HTML-only mail loses its markup). */
export function plainText(reading: Reading): string {
  if (reading.text) return reading.text;
  if (!reading.html) return "";
  return reading.html.replace(/<(br|\/p|\/div|\/li|\/h\d)[^>]*>/gi, "\n").replace(/<[^>]+>/g, "").replace(/&nbsp;/g, " ").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

export function startDraft(mode: Mode, original: Reading | undefined, self: string, wrote: (who: string, when: string) => string, forwarded: string): Draft {
  if (!original || mode === "new") return { to: "", cc: "", subject: "", text: "", attachments: [], inReplyTo: null, references: [] };
  if (mode === "draft") {
    return {
      to: recipients(original.to.join(", ")).join(", "),
      cc: recipients(original.cc.join(", ")).join(", "),
      subject: original.subject,
      text: plainText(original),
      attachments: original.attachments.filter((a) => !a.inline).map(({ filename, mimeType, bytes }) => ({ filename, mimeType, bytes })),
      // A draft of a reply keeps the thread it answers.
      inReplyTo: messageIds(original.inReplyTo)[0] ?? null,
      references: messageIds(original.references),
    };
  }
  const me = self.toLowerCase();
  const body = plainText(original);
  const when = original.date ?? "";
  if (mode === "forward") {
    const header = [forwarded, `From: ${original.from}`, `Date: ${when}`, `Subject: ${original.subject}`, `To: ${original.to.join(", ")}`].join("\n");
    return {
      to: "",
      cc: "",
      subject: prefixed("Fwd", original.subject),
      text: `\n\n${header}\n\n${body}`,
      attachments: original.attachments.filter((a) => !a.inline).map(({ filename, mimeType, bytes }) => ({ filename, mimeType, bytes })),
      inReplyTo: null,
      references: [],
    };
  }
  const replyTo = original.replyTo.length ? original.replyTo : [original.from];
  const to = recipients(replyTo.join(", ")).filter((a) => a.toLowerCase() !== me);
  // Replying to one's own sent message goes to its recipients.
  const direct = to.length ? to : recipients(original.to.join(", "));
  const cc =
    mode === "all"
      ? recipients([...original.to, ...original.cc].join(", ")).filter((a) => a.toLowerCase() !== me && !direct.some((d) => d.toLowerCase() === a.toLowerCase()))
      : [];
  return {
    to: direct.join(", "),
    cc: cc.join(", "),
    subject: prefixed("Re", original.subject),
    text: `\n\n${wrote(original.from, when)}\n${quoted(body)}\n`,
    attachments: [],
    ...threading(original),
  };
}
