// The account's OpenPGP key, unlocked on this device at sign-in and kept in
// this tab's memory only: never written to storage, forgotten at sign-out.
// A tab reloaded after sign-in has a session but no export key; the reader
// then asks for the password again (src/mail/views/message.tsx).
import type { PrivateKey } from "openpgp";
import type { Session } from "../api";
import { unlockedKey } from "../device";

let unlocked: { accountId: string; key: Promise<PrivateKey> } | null = null;

/** The key, unlocked here; the first call fetches it locked and opens it. */
export function privateKey(session: Session): Promise<PrivateKey> {
  const accountId = session.accountId;
  if (!accountId) return Promise.reject(new Error("this sign-in has no mailbox"));
  if (unlocked?.accountId !== accountId) {
    const key = unlockedKey(session.token, accountId).then(async (armoredKey) => {
      const openpgp = await import("openpgp");
      return openpgp.readPrivateKey({ armoredKey });
    });
    // A failure (no export key after a reload) is not kept: the next try may succeed.
    key.catch(() => {
      if (unlocked?.key === key) unlocked = null;
    });
    unlocked = { accountId, key };
  }
  return unlocked.key;
}

/** At sign-out (src/mail/app.tsx). */
export function forgetKey(): void {
  unlocked = null;
}
