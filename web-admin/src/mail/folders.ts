// An account's mailboxes in the order people expect: the special-use ones
// (Inbox, Drafts, Sent, Archive, Junk, Trash) first, then the account's own
// by name, each level under its parent.
import { type Schemas, api, call } from "../api";
import { type Key, t } from "../i18n";

export type Mailbox = Schemas["MailboxView"];
export type Folder = Schemas["Folder"];

const SPECIAL: Folder[] = ["inbox", "drafts", "sent", "archive", "junk", "trash"];

export function sortMailboxes(boxes: Mailbox[]): Mailbox[] {
  const rank = (m: Mailbox) => (m.role ? SPECIAL.indexOf(m.role) : SPECIAL.length);
  return [...boxes].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}

/** The name to show: a special mailbox's in the page's language, an own one's last level. */
export function mailboxLabel(m: Mailbox): string {
  if (m.role) return t(`folder.${m.role}` as Key);
  return m.name.split("/").pop() ?? m.name;
}

/** How deep an own mailbox sits (`Projects/2026` is 1). */
export function depth(m: Mailbox): number {
  return m.role ? 0 : m.name.split("/").length - 1;
}

/** The path segment naming a mailbox: its special use, or its id. */
export function mailboxSlug(m: Mailbox): string {
  return m.role ?? m.id;
}

export function findMailbox(boxes: Mailbox[], slug: string): Mailbox | undefined {
  return boxes.find((m) => m.role === slug || m.id === slug);
}

export async function loadMailboxes(accountId: string): Promise<Mailbox[]> {
  return sortMailboxes(await call(api.GET("/v1/accounts/{account_id}/mailboxes", { params: { path: { account_id: accountId } } })));
}
