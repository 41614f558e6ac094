import * as openpgp from "openpgp";
import { describe, expect, it } from "vitest";
import { bareAddress, readMessage } from "../src/mail/reading";

const crlf = (s: string) => s.replace(/\r?\n/g, "\r\n");

async function keyPair() {
  return openpgp.generateKey({ type: "curve25519", userIDs: [{ email: "bob@example.test" }], format: "object" });
}

/** A PGP/MIME message as the server stores a sealed one: the wrapper's Subject is `...`. */
async function sealed(publicKey: openpgp.PublicKey, inner: string): Promise<Uint8Array> {
  const armored = await openpgp.encrypt({ message: await openpgp.createMessage({ text: crlf(inner) }), encryptionKeys: publicKey });
  return new TextEncoder().encode(
    crlf(`From: alice@example.test
To: bob@example.test
Subject: ...
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"

--b1
Content-Type: application/pgp-encrypted

Version: 1

--b1
Content-Type: application/octet-stream; name="encrypted.asc"

${armored}
--b1--
`),
  );
}

describe("reading a stored message", () => {
  it("decrypts a sealed message with the key and shows its protected Subject", async () => {
    const { privateKey, publicKey } = await keyPair();
    const raw = await sealed(
      publicKey,
      `Content-Type: multipart/mixed; boundary="m1"; protected-headers="v1"
Subject: The real subject
From: Alice <alice@example.test>
To: bob@example.test

--m1
Content-Type: text/plain; charset=utf-8

Meet at noon, café.
--m1
Content-Type: application/pdf; name="plan.pdf"
Content-Disposition: attachment; filename="plan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--m1--
`,
    );
    let asked = 0;
    const read = await readMessage(raw, async () => {
      asked++;
      return privateKey;
    });
    expect(asked).toBe(1);
    expect(read.decrypted).toBe(true);
    expect(read.subject).toBe("The real subject");
    expect(read.from).toBe("Alice <alice@example.test>");
    expect(read.text?.trim()).toBe("Meet at noon, café.");
    expect(read.attachments.map((a) => [a.filename, a.mimeType, new TextDecoder().decode(a.bytes)])).toEqual([["plan.pdf", "application/pdf", "%PDF-1.4\n"]]);
  });

  it("opens a message its sender encrypted that was sealed again on arrival", async () => {
    const { privateKey, publicKey } = await keyPair();
    const fromSender = new TextDecoder().decode(
      await sealed(publicKey, `Content-Type: text/plain; charset=utf-8; protected-headers="v1"
Subject: Inside both layers
From: Carol <carol@example.test>

The code is 8824.
`),
    );
    // The server's seal wraps the whole PGP/MIME message it received.
    const raw = await sealed(publicKey, fromSender);
    let asked = 0;
    const read = await readMessage(raw, async () => {
      asked++;
      return privateKey;
    });
    expect(read.subject).toBe("Inside both layers");
    expect(read.text?.trim()).toBe("The code is 8824.");
    expect(read.attachments).toEqual([]);
    expect(asked).toBe(2);
  });

  it("refuses to show a sealed message with the wrong key", async () => {
    const { publicKey } = await keyPair();
    const other = await keyPair();
    const raw = await sealed(publicKey, "Content-Type: text/plain\n\nsecret\n");
    await expect(readMessage(raw, async () => other.privateKey)).rejects.toThrow();
  });

  it("reads standard mail without asking for the key", async () => {
    const raw = new TextEncoder().encode(crlf("From: a@example.test\nTo: b@example.test\nSubject: =?utf-8?q?Caf=C3=A9?=\nContent-Type: text/html\n\n<p>Hi</p>\n"));
    const read = await readMessage(raw, () => Promise.reject(new Error("asked for the key")));
    expect(read.decrypted).toBe(false);
    expect(read.subject).toBe("Café");
    expect(read.html?.trim()).toBe("<p>Hi</p>");
  });

  it("takes the bare address out of a display form", () => {
    expect(bareAddress("Alice <alice@example.test>")).toBe("alice@example.test");
    expect(bareAddress(" bob@example.test ")).toBe("bob@example.test");
  });
});
