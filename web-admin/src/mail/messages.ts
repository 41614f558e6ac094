// Message metadata and the actions on it (flags, filing, deletion), and the
// messages read on this device, kept in memory for reply and for the list's
// subjects of sealed mail. Nothing decrypted is written anywhere.
import { type Schemas, api, call, fetchAuthorized } from "../api";
import type { Reading } from "./reading";

export type MessageMeta = Schemas["MessageMeta"];
export type Flag = Schemas["Flag"];

/** How many pages of metadata the list walks (the API pages oldest first: NEEDS.md §5). */
const MAX_PAGES = 20;
const PAGE = 100;

/** Every message of a mailbox, newest first (up to MAX_PAGES × PAGE). */
export async function listMailbox(accountId: string, mailboxId: string): Promise<{ items: MessageMeta[]; truncated: boolean }> {
  const items: MessageMeta[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const got = await call(
      api.GET("/v1/accounts/{account_id}/messages", {
        params: { path: { account_id: accountId }, query: { mailbox_id: mailboxId, limit: PAGE, ...(cursor ? { cursor } : {}) } },
      }),
    );
    items.push(...(got.items as MessageMeta[]));
    if (!got.next_cursor) return { items: newestFirst(items), truncated: false };
    cursor = got.next_cursor;
  }
  return { items: newestFirst(items), truncated: true };
}

export function newestFirst(items: MessageMeta[]): MessageMeta[] {
  return [...items].sort((a, b) => b.received_at.localeCompare(a.received_at));
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

export function remembered(id: string): Reading | undefined {
  return readings.get(id);
}

export function remember(id: string, reading: Reading): void {
  readings.set(id, reading);
}

export function forgetReadings(): void {
  readings.clear();
}
