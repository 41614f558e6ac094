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
  if (!original || mode === "new") return { to: "", cc: "", subject: "", text: "", attachments: [] };
  if (mode === "draft") {
    return {
      to: recipients(original.to.join(", ")).join(", "),
      cc: recipients(original.cc.join(", ")).join(", "),
      subject: original.subject,
      text: plainText(original),
      attachments: original.attachments.filter((a) => !a.inline).map(({ filename, mimeType, bytes }) => ({ filename, mimeType, bytes })),
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
  };
}
