// What this device has read of sealed mail (subject and sender), kept in
// IndexedDB encrypted with a key derived from the export key (src/device.ts
// deviceKey), so the list can show and search sealed mail without the
// server learning either. Without an unlocked key the index stays closed.
import { deviceKey } from "../device";

export interface Headers {
  subject: string;
  from: string;
}

const DB = "caliop-mail-index";
const STORE = "headers";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

let key: { accountId: string; key: Promise<CryptoKey | null> } | null = null;

function keyFor(accountId: string): Promise<CryptoKey | null> {
  if (key?.accountId !== accountId) key = { accountId, key: deviceKey(`mail index ${accountId}`) };
  const found = key.key;
  // Not unlocked yet: ask again next time.
  found.then((k) => {
    if (!k && key?.key === found) key = null;
  });
  return found;
}

export function forgetIndexKey(): void {
  key = null;
}

/** Keeps `headers` of a message read here, encrypted. */
export async function remember(accountId: string, messageId: string, headers: Headers): Promise<void> {
  const k = await keyFor(accountId);
  if (!k) return;
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const id = `${accountId}/${messageId}`;
  const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: new TextEncoder().encode(id) }, k, new TextEncoder().encode(JSON.stringify(headers)));
  const db = await open();
  await done(db.transaction(STORE, "readwrite").objectStore(STORE).put({ iv, data }, id));
  db.close();
}

/** The headers this device read before, for those of `messageIds` it has. */
export async function recall(accountId: string, messageIds: string[]): Promise<Map<string, Headers>> {
  const found = new Map<string, Headers>();
  const k = await keyFor(accountId);
  if (!k || messageIds.length === 0) return found;
  const db = await open();
  const store = db.transaction(STORE, "readonly").objectStore(STORE);
  const rows = await Promise.all(messageIds.map((m) => done(store.get(`${accountId}/${m}`)) as Promise<{ iv: Uint8Array; data: ArrayBuffer } | undefined>));
  db.close();
  await Promise.all(
    rows.map(async (row, i) => {
      if (!row) return;
      const id = `${accountId}/${messageIds[i]}`;
      try {
        const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: row.iv as BufferSource, additionalData: new TextEncoder().encode(id) }, k, row.data);
        found.set(messageIds[i]!, JSON.parse(new TextDecoder().decode(plain)) as Headers);
      } catch {
        // Written under another password: forgotten, read again when opened.
      }
    }),
  );
  return found;
}
