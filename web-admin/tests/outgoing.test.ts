import * as openpgp from "openpgp";
import { describe, expect, it } from "vitest";
import { encodeWords, encryptedMessage, innerEntity, plainMessage } from "../src/mail/outgoing";
import { readMessage } from "../src/mail/reading";

describe("a message encrypted in the browser", () => {
  it("is PGP/MIME that the recipient's key opens, with its headers protected inside", async () => {
    const bob = await openpgp.generateKey({ type: "curve25519", userIDs: [{ email: "bob@b.test" }], format: "object" });
    const alice = await openpgp.generateKey({ type: "curve25519", userIDs: [{ email: "alice@a.test" }], format: "object" });
    const raw = await encryptedMessage(
      {
        from: "alice@a.test",
        to: ["bob@b.test"],
        cc: [],
        bcc: ["hidden@c.test"],
        subject: "Réunion à huis clos",
        text: "Only for you.\nLine two.",
        attachments: [{ filename: "plan.txt", mimeType: "text/plain", bytes: new TextEncoder().encode("the plan") }],
        inReplyTo: "<2@b.test>",
        references: ["<1@a.test>", "<2@b.test>"],
      },
      [bob.publicKey, alice.publicKey],
      alice.privateKey,
    );
    expect(raw).toContain("Subject: ...\r\n");
    expect(raw).toContain("Bcc: hidden@c.test");
    // The thread is outside, for mail clients, and inside with the protected headers.
    expect(raw).toContain("In-Reply-To: <2@b.test>\r\nReferences: <1@a.test>\r\n <2@b.test>\r\n");
    expect(raw).not.toContain("Only for you");
    expect(raw).not.toContain("huis clos");
    for (const key of [bob.privateKey, alice.privateKey]) {
      const read = await readMessage(new TextEncoder().encode(raw), async () => key);
      expect(read.decrypted).toBe(true);
      expect(read.subject).toBe("Réunion à huis clos");
      expect(read.text?.replace(/\r\n/g, "\n").trim()).toBe("Only for you.\nLine two.");
      expect(read.attachments.map((a) => [a.filename, new TextDecoder().decode(a.bytes)])).toEqual([["plan.txt", "the plan"]]);
      // The inner part never names the Bcc recipient.
      expect(read.to).toEqual(["bob@b.test"]);
      expect([read.inReplyTo, read.references?.replace(/\s+/g, " ")]).toEqual(["<2@b.test>", "<1@a.test> <2@b.test>"]);
    }
  });

  it("keeps the thread's headers inside the encrypted entity too", () => {
    const inner = innerEntity({ from: "a@a.test", to: ["b@b.test"], cc: [], bcc: [], subject: "Re: x", text: "y", attachments: [], inReplyTo: "<1@a.test>", references: ["<1@a.test>"] }, "Mon, 1 Jun 2026 10:00:00 +0000", "<2@a.test>");
    expect(inner).toContain('protected-headers="v1"');
    expect(inner).toContain("In-Reply-To: <1@a.test>\r\nReferences: <1@a.test>\r\n");
  });

  it("writes a draft in clear that reads back whole", async () => {
    const raw = plainMessage({ from: "a@a.test", to: ["b@b.test"], cc: ["c@c.test"], bcc: ["d@d.test"], subject: "Brouillon été", text: "half written", attachments: [] });
    expect(raw).toContain("MIME-Version: 1.0");
    expect(raw).toContain("Bcc: d@d.test");
    const read = await readMessage(new TextEncoder().encode(raw), () => Promise.reject(new Error("asked for a key")));
    expect(read.decrypted).toBe(false);
    expect([read.subject, read.to, read.cc, read.text?.trim()]).toEqual(["Brouillon été", ["b@b.test"], ["c@c.test"], "half written"]);
  });

  it("encodes non-ASCII header values as encoded-words of bounded length", () => {
    expect(encodeWords("plain")).toBe("plain");
    const long = encodeWords("é".repeat(60));
    for (const line of long.split("\r\n")) expect(line.length).toBeLessThanOrEqual(78);
    expect(long.startsWith("=?utf-8?B?")).toBe(true);
  });
});
