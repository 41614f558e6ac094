// Message metadata and the actions on it (flags, filing, deletion), and the
// messages read on this device: whole in memory (for reply and forward),
// their subject and sender also in the device's encrypted index
// (src/mail/header-index.ts) for the list and search. Nothing decrypted is written
// anywhere in clear.
import { type Schemas, api, call, fetchAuthorized } from "../api";
import { type Headers, recall, remember as keep } from "./header-index";
import { privateKey } from "./keyring";
import { type Reading, readMessage } from "./reading";
import type { Session } from "../api";

export type MessageMeta = Schemas["MessageMeta"];
export type Flag = Schemas["Flag"];

/** Messages asked for at a time; the list shows them a page at a time. */
export const PAGE = 50;

/**
 * The newest `pages` pages of a mailbox, newest first as the server orders
 * them (`order=newest`, its cursor going on to older ones); `more` says
 * whether older messages remain.
 */
export async function listMailbox(accountId: string, mailboxId: string, pages: number): Promise<{ items: MessageMeta[]; more: boolean }> {
  const items: MessageMeta[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < pages; page++) {
    const got = await call(
      api.GET("/v1/accounts/{account_id}/messages", {
        params: { path: { account_id: accountId }, query: { mailbox_id: mailboxId, order: "newest", limit: PAGE, ...(cursor ? { cursor } : {}) } },
      }),
    );
    items.push(...(got.items as MessageMeta[]));
    if (!got.next_cursor) return { items, more: false };
    cursor = got.next_cursor;
  }
  return { items, more: true };
}

export async function updateMessage(id: string, body: Schemas["UpdateMessage"]): Promise<MessageMeta> {
  return call(api.PATCH("/v1/messages/{message_id}", { params: { path: { message_id: id } }, body }));
}

export async function setFlag(meta: MessageMeta, flag: Flag, on: boolean): Promise<MessageMeta> {
  const flags = meta.flags.filter((f) => f !== flag);
  if (on) flags.push(flag);
  return updateMessage(meta.id, { flags });
}

export async function deleteMessage(id: string): Promise<void> {
  await call(api.DELETE("/v1/messages/{message_id}", { params: { path: { message_id: id } } }));
}

export async function getMessage(id: string): Promise<MessageMeta> {
  return call(api.GET("/v1/messages/{message_id}", { params: { path: { message_id: id } } }));
}

export async function rawMessage(id: string): Promise<Uint8Array> {
  const response = await fetchAuthorized(`/v1/messages/${encodeURIComponent(id)}/raw`);
  return new Uint8Array(await response.arrayBuffer());
}

const readings = new Map<string, Reading>();
const headers = new Map<string, Headers>();

export function remembered(id: string): Reading | undefined {
  return readings.get(id);
}

/** The subject and sender this device read of a message, if it did. */
export function knownHeaders(id: string): Headers | undefined {
  const read = readings.get(id);
  return read ? { subject: read.subject, from: read.from } : headers.get(id);
}

export function remember(accountId: string, id: string, reading: Reading): void {
  readings.set(id, reading);
  if (reading.decrypted) void keep(accountId, id, { subject: reading.subject, from: reading.from }).catch(() => {});
}

export function forgetReadings(): void {
  readings.clear();
  headers.clear();
}

/**
 * Makes the subjects and senders of sealed `messages` known here: from the
 * device's index first, then by reading the rest (one at a time, while the
 * key is unlocked; it is never asked for). Calls `progress` as they come.
 */
export async function learnHeaders(session: Session, messages: MessageMeta[], progress: () => void, live: () => boolean): Promise<void> {
  const accountId = session.accountId;
  if (!accountId) return;
  const unknown = messages.filter((m) => m.level !== "standard" && !knownHeaders(m.id)).map((m) => m.id);
  const recalled = await recall(accountId, unknown).catch(() => new Map<string, Headers>());
  recalled.forEach((h, id) => headers.set(id, h));
  if (recalled.size) progress();
  for (const id of unknown.filter((id) => !recalled.has(id))) {
    if (!live()) return;
    let reading: Reading;
    try {
      reading = await readMessage(await rawMessage(id), () => privateKey(session));
    } catch {
      return;
    }
    headers.set(id, { subject: reading.subject, from: reading.from });
    void keep(accountId, id, { subject: reading.subject, from: reading.from }).catch(() => {});
    progress();
  }
}
