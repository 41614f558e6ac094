import { describe, expect, it } from "vitest";
import { messageIds, recipients, startDraft, threading } from "../src/mail/compose";
import type { Reading } from "../src/mail/reading";

const original: Reading = {
  subject: "Plans",
  from: "Alice <alice@a.test>",
  fromAddress: "alice@a.test",
  to: ["Bob <bob@b.test>", "me@here.test"],
  cc: ["carol@c.test", "ALICE@a.test"],
  replyTo: [],
  date: "Mon, 1 Jun 2026 10:00:00 +0000",
  messageId: "<1@a.test>",
  inReplyTo: null,
  references: null,
  text: "Line one\n> earlier",
  html: null,
  attachments: [{ filename: "a.pdf", mimeType: "application/pdf", bytes: new Uint8Array([1]), contentId: null, inline: false }],
  decrypted: true,
};
const wrote = (who: string) => `${who} wrote:`;

describe("threading an answer", () => {
  it("answers the original's Message-ID and appends it to its References, oldest first", () => {
    const d = startDraft("all", { ...original, references: "<0@z.test>\r\n <00@y.test>", inReplyTo: "<00@y.test>" }, "me@here.test", wrote, "Forwarded");
    expect(d.inReplyTo).toBe("<1@a.test>");
    expect(d.references).toEqual(["<0@z.test>", "<00@y.test>", "<1@a.test>"]);
  });

  it("starts References from In-Reply-To when the original has none, and a first message from itself", () => {
    expect(threading({ messageId: "<2@a.test>", inReplyTo: "<1@a.test>", references: null })).toEqual({ inReplyTo: "<2@a.test>", references: ["<1@a.test>", "<2@a.test>"] });
    expect(threading({ messageId: "<1@a.test>", inReplyTo: null, references: null })).toEqual({ inReplyTo: "<1@a.test>", references: ["<1@a.test>"] });
    expect(threading({ messageId: null, inReplyTo: null, references: null })).toEqual({ inReplyTo: null, references: [] });
  });

  it("gives a forward no thread, and reads ids without their brackets", () => {
    expect(startDraft("forward", original, "me@here.test", wrote, "Forwarded").references).toEqual([]);
    expect(messageIds("1@a.test")).toEqual(["<1@a.test>"]);
    expect(messageIds("<a@x> <b@y> <a@x>")).toEqual(["<a@x>", "<b@y>"]);
  });
});

describe("starting a reply or a forward", () => {
  it("replies to the sender, quoting the text", () => {
    const d = startDraft("reply", original, "me@here.test", wrote, "Forwarded");
    expect(d.to).toBe("alice@a.test");
    expect(d.cc).toBe("");
    expect(d.subject).toBe("Re: Plans");
    expect(d.text).toContain("Alice <alice@a.test> wrote:\n> Line one\n>> earlier");
  });

  it("replies to all but oneself and the sender twice", () => {
    const d = startDraft("all", original, "ME@here.test", wrote, "Forwarded");
    expect(d.to).toBe("alice@a.test");
    expect(d.cc).toBe("bob@b.test, carol@c.test");
  });

  it("forwards with the attachments and no recipients", () => {
    const d = startDraft("forward", { ...original, subject: "Fwd: Plans" }, "me@here.test", wrote, "Forwarded");
    expect(d.to).toBe("");
    expect(d.subject).toBe("Fwd: Plans");
    expect(d.attachments.map((a) => a.filename)).toEqual(["a.pdf"]);
  });

  it("reads a recipient line", () => {
    expect(recipients("a@x.test, Name <b@y.test>; A@X.test\n")).toEqual(["a@x.test", "b@y.test"]);
  });
});
