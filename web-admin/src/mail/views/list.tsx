// One mailbox's messages, newest first, a page at a time (asked of the
// server only when the person goes to an older page). Standard mail
// shows its sender and subject from the server; sealed mail shows them once
// this device has read them (src/mail/messages.ts learnHeaders), and what the
// server knows (the envelope sender) until then.
import { useEffect, useState } from "preact/hooks";
import type { Session } from "../../api";
import { formatDate, formatNumber, t } from "../../i18n";
import { ErrorBox, PageHeader, useLoad } from "../../ui";
import { type Mailbox, mailboxLabel, mailboxSlug } from "../folders";
import { type MessageMeta, PAGE, knownHeaders, learnHeaders, listMailbox, setFlag } from "../messages";
import { Grade } from "./privacy";

/** A padlock, drawn (emoji fonts are not everywhere). */
function Lock() {
  return (
    <svg class="lock" viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" focusable="false">
      <path d="M4 7V5a4 4 0 0 1 8 0v2h1v8H3V7h1zm2 0h4V5a2 2 0 0 0-4 0v2z" fill="currentColor" />
    </svg>
  );
}

export function subjectOf(meta: MessageMeta): { text: string; sealed: boolean } {
  const read = knownHeaders(meta.id);
  if (read) return { text: read.subject || t("mail.no_subject"), sealed: false };
  if (meta.level !== "standard") return { text: t("mail.sealed_subject"), sealed: true };
  return { text: meta.subject || t("mail.no_subject"), sealed: false };
}

export function senderOf(meta: MessageMeta): string {
  return knownHeaders(meta.id)?.from || meta.sender || meta.envelope_from || t("mail.unknown_sender");
}

/**
 * Whether a message's sender or subject, as this device can read them,
 * holds every word of `query`. Searching happens here: the server never
 * learns what was searched.
 */
function matches(meta: MessageMeta, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const subject = subjectOf(meta);
  const text = `${senderOf(meta)} ${subject.sealed ? "" : subject.text} ${meta.envelope_from}`.toLowerCase();
  return words.every((w) => text.includes(w));
}

export function MessageList({ session, accountId, mailbox, onChange }: { session: Session; accountId: string; mailbox: Mailbox; onChange: () => void }) {
  const [page, setPage] = useState(0);
  // Pages asked of the server so far: the newest, and the older ones the person went to.
  const [fetched, setFetched] = useState(1);
  const [query, setQuery] = useState("");
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setPage(0);
    setFetched(1);
  }, [mailbox.id]);
  // Reloaded when the mailbox changed (its modseq moves with every change) or the session was renewed.
  const list = useLoad(() => listMailbox(accountId, mailbox.id, fetched), [accountId, mailbox.id, mailbox.highest_modseq, session.token, fetched]);
  const [, setLearned] = useState(0);
  // Sealed subjects of the page being looked at, read here (or recalled from the device's index).
  const unfiltered = list.data?.items.slice(page * PAGE, page * PAGE + PAGE);
  useEffect(() => {
    if (!unfiltered) return;
    let live = true;
    void learnHeaders(session, unfiltered, () => live && setLearned((n) => n + 1), () => live);
    return () => {
      live = false;
    };
  }, [list.data, page, session.token]);
  const items = list.data?.items.filter((m) => matches(m, query));
  const pages = items ? Math.max(1, Math.ceil(items.length / PAGE)) + (list.data?.more ? 1 : 0) : 1;
  const older = () => {
    if (list.data?.more && (page + 2) * PAGE > (items?.length ?? 0)) setFetched(fetched + 1);
    setPage(page + 1);
  };
  const shown = items?.slice(page * PAGE, page * PAGE + PAGE);
  const title = mailboxLabel(mailbox);

  const toggle = async (meta: MessageMeta, flag: "seen" | "flagged") => {
    setError(null);
    try {
      await setFlag(meta, flag, !meta.flags.includes(flag));
      // The folders reload; the mailbox's modseq moved, so this list reloads with them.
      onChange();
    } catch (e) {
      setError((e as { detail: string }).detail);
    }
  };

  return (
    <section class="message-list">
      <PageHeader title={title}>
        <button type="button" onClick={() => { list.reload(); onChange(); }}>{t("common.refresh")}</button>
      </PageHeader>
      <div class="search" role="search">
        <label for="mail-search" class="visually-hidden">{t("mail.search")}</label>
        <input id="mail-search" type="search" value={query} placeholder={t("mail.search")} aria-describedby="mail-search-hint"
          onInput={(e) => { setQuery(e.currentTarget.value); setPage(0); }} />
        <p class="hint" id="mail-search-hint">{t("mail.search_hint")}</p>
      </div>
      <p class="small" aria-live="polite">
        {items ? t("mail.count", { count: formatNumber(items.length), unread: formatNumber(mailbox.counts.unseen) }) : t("common.loading")}
      </p>
      {error && <p class="form-error" role="alert">{error}</p>}
      {list.error && <ErrorBox problem={list.error} retry={list.reload} />}
      {shown && shown.length === 0 && <p class="empty card">{t("mail.empty")}</p>}
      {!items && !list.error && (
        <ul class="messages" aria-busy="true">
          {[0, 1, 2].map((i) => <li key={i} class="skeleton"><span class="bone" /></li>)}
        </ul>
      )}
      {shown && shown.length > 0 && (
        <ul class="messages" aria-label={title}>
          {shown.map((m) => {
            const unread = !m.flags.includes("seen");
            const flagged = m.flags.includes("flagged");
            const subject = subjectOf(m);
            return (
              <li key={m.id} class={unread ? "unread" : ""} data-testid="message-row">
                <a href={`/mail/${mailboxSlug(mailbox)}/${m.id}`} class="message-link">
                  <span class="from">{senderOf(m)}</span>
                  <span class={`subject${subject.sealed ? " sealed" : ""}`}>
                    {subject.sealed && <Lock />}
                    {subject.text}
                  </span>
                  <span class="when">{formatDate(m.received_at, true)}</span>
                  <span class="visually-hidden">{unread ? t("mail.unread") : t("mail.read")}{flagged ? `, ${t("mail.flagged")}` : ""}</span>
                </a>
                <span class="row-tools">
                  <Grade grade={m.privacy.grade} />
                  <button type="button" class="icon" aria-pressed={flagged ? "true" : "false"} onClick={() => toggle(m, "flagged")} aria-label={t("mail.flag_named", { subject: subject.text })}>
                    <span aria-hidden="true">{flagged ? "★" : "☆"}</span>
                  </button>
                  <button type="button" class="icon" onClick={() => toggle(m, "seen")} aria-label={t(unread ? "mail.mark_read_named" : "mail.mark_unread_named", { subject: subject.text })}>
                    <span aria-hidden="true">{unread ? "●" : "○"}</span>
                  </button>
                </span>
              </li>
            );
          })}
        </ul>
      )}
      {pages > 1 && (
        <nav class="pager" aria-label={t("mail.pages")}>
          <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>{t("common.newer")}</button>
          <span>{list.data?.more ? t("mail.page_of_more", { page: page + 1 }) : t("mail.page_of", { page: page + 1, pages })}</span>
          <button type="button" disabled={page + 1 >= pages} onClick={older}>{t("common.older")}</button>
        </nav>
      )}
    </section>
  );
}
