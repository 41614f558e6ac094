// One message, read on this device: sealed mail is fetched as stored and
// decrypted here with the key unlocked at sign-in (after a reload the
// password is asked again to unlock it); HTML is sanitized and shown in a
// sandboxed frame with remote content held back until allowed.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Problem, type Session, setSession, signIn } from "../../api";
import { asProblem } from "../../credentials";
import { Refused } from "../../device";
import { formatBytes, formatDate, t } from "../../i18n";
import { navigate } from "../../router";
import { ErrorBox, Field, FormError, PageHeader, Submit, useForm } from "../../ui";
import { type Mailbox, mailboxLabel, mailboxSlug } from "../folders";
import { sanitizeHtml } from "../html";
import { privateKey } from "../keyring";
import { type MessageMeta, deleteMessage, getMessage, rawMessage, remember, setFlag, updateMessage } from "../messages";
import { type Attachment, type Reading, readMessage } from "../reading";
import { PrivacyPanel } from "./privacy";

type State =
  | { kind: "loading" }
  | { kind: "locked"; meta: MessageMeta }
  | { kind: "error"; problem: Problem }
  | { kind: "read"; meta: MessageMeta; reading: Reading };

function keyMissing(e: unknown): boolean {
  return e instanceof Refused && e.status === 401;
}

export function MessageView({ session, messageId, mailbox, boxes, onChange }: {
  session: Session;
  messageId: string;
  mailbox: Mailbox | undefined;
  boxes: Mailbox[];
  onChange: () => void;
}) {
  const [state, setState] = useState<State>({ kind: "loading" });
  const [tick, setTick] = useState(0);
  const [actionError, setActionError] = useState<string | null>(null);
  const back = mailbox ? `/mail/${mailboxSlug(mailbox)}` : "/mail/inbox";

  useEffect(() => {
    let live = true;
    (async () => {
      let meta: MessageMeta;
      try {
        meta = await getMessage(messageId);
      } catch (e) {
        if (live) setState({ kind: "error", problem: asProblem(e) });
        return;
      }
      try {
        const reading = await readMessage(await rawMessage(messageId), () => privateKey(session));
        remember(session.accountId ?? "", messageId, reading);
        if (!meta.flags.includes("seen")) {
          meta = await setFlag(meta, "seen", true);
          onChange();
        }
        if (live) setState({ kind: "read", meta, reading });
      } catch (e) {
        if (!live) return;
        if (keyMissing(e)) setState({ kind: "locked", meta });
        else setState({ kind: "error", problem: { ...asProblem(e), detail: t("mail.unreadable", { why: asProblem(e).detail }) } });
      }
    })();
    return () => {
      live = false;
    };
  }, [messageId, tick]);

  const act = async (action: () => Promise<unknown>, after?: () => void) => {
    setActionError(null);
    try {
      await action();
      onChange();
      after?.();
    } catch (e) {
      setActionError(asProblem(e).detail);
    }
  };

  if (state.kind === "loading") return <p class="loading" role="status">{t("mail.opening")}</p>;
  if (state.kind === "error") return <ErrorBox problem={state.problem} retry={() => setTick((n) => n + 1)} />;
  if (state.kind === "locked") return <Unlock session={session} onUnlocked={() => setTick((n) => n + 1)} />;

  const { meta, reading } = state;
  const inTrash = mailbox?.role === "trash";
  const flagged = meta.flags.includes("flagged");
  const setMeta = (next: MessageMeta) => setState({ kind: "read", meta: next, reading });
  return (
    <article class="reader" aria-labelledby="page-title">
      <p class="back"><a href={back}>← {mailbox ? mailboxLabel(mailbox) : t("folder.inbox")}</a></p>
      <PageHeader title={reading.subject || t("mail.no_subject")} />
      <div class="toolbar" role="toolbar" aria-label={t("mail.actions")}>
        {mailbox?.role === "drafts" && <a class="button primary" href={`/compose?draft=${meta.id}`}>{t("compose.edit_draft")}</a>}
        <a class={`button${mailbox?.role === "drafts" ? "" : " primary"}`} href={`/compose?reply=${meta.id}&mode=reply`}>{t("mail.reply")}</a>
        <a class="button" href={`/compose?reply=${meta.id}&mode=all`}>{t("mail.reply_all")}</a>
        <a class="button" href={`/compose?reply=${meta.id}&mode=forward`}>{t("mail.forward")}</a>
        <button type="button" aria-pressed={flagged ? "true" : "false"} onClick={() => act(async () => setMeta(await setFlag(meta, "flagged", !flagged)))}>
          {flagged ? t("mail.unflag") : t("mail.flag")}
        </button>
        <button type="button" onClick={() => act(() => setFlag(meta, "seen", false), () => navigate(back))}>{t("mail.mark_unread")}</button>
        <MoveTo boxes={boxes} current={meta.mailbox_id} onMove={(id) => act(() => updateMessage(meta.id, { mailbox_id: id }), () => navigate(back))} />
        <button
          type="button"
          class="danger"
          onClick={() => act(() => (inTrash ? deleteMessage(meta.id) : updateMessage(meta.id, { folder: "trash" })), () => navigate(back))}
        >
          {inTrash ? t("mail.delete_forever") : t("mail.delete")}
        </button>
      </div>
      {actionError && <p class="form-error" role="alert">{actionError}</p>}
      <dl class="headers">
        <dt>{t("mail.from")}</dt>
        <dd data-testid="from">{reading.from || meta.envelope_from}</dd>
        <dt>{t("mail.to")}</dt>
        <dd>{reading.to.join(", ") || meta.envelope_to}</dd>
        {reading.cc.length > 0 && (
          <>
            <dt>{t("mail.cc")}</dt>
            <dd>{reading.cc.join(", ")}</dd>
          </>
        )}
        <dt>{t("mail.date")}</dt>
        <dd>{formatDate(reading.date ?? meta.received_at, true)}</dd>
      </dl>
      <p class={`seal ${reading.decrypted ? "good" : ""}`}>
        {reading.decrypted ? t("mail.decrypted_here") : meta.level === "standard" ? t("mail.standard_note") : t("mail.not_encrypted_note")}
      </p>
      <PrivacyPanel meta={meta} />
      <Body reading={reading} />
      <Attachments items={reading.attachments.filter((a) => !a.inline)} />
    </article>
  );
}

function MoveTo({ boxes, current, onMove }: { boxes: Mailbox[]; current: string; onMove: (id: string) => void }) {
  const [target, setTarget] = useState("");
  return (
    <span class="move">
      <label for="move-to" class="visually-hidden">{t("mail.move_to")}</label>
      <select id="move-to" value={target} onInput={(e) => setTarget(e.currentTarget.value)}>
        <option value="">{t("mail.move_to")}</option>
        {boxes.filter((b) => b.id !== current).map((b) => (
          <option value={b.id} key={b.id}>{mailboxLabel(b)}</option>
        ))}
      </select>
      <button type="button" disabled={!target} onClick={() => target && onMove(target)}>{t("mail.move")}</button>
    </span>
  );
}

function Body({ reading }: { reading: Reading }) {
  const [allowRemote, setAllowRemote] = useState(false);
  const frame = useRef<HTMLIFrameElement>(null);
  if (!reading.html) return <pre class="mail-text" data-testid="body">{reading.text ?? ""}</pre>;
  const safe = sanitizeHtml(reading.html, reading.attachments, allowRemote);
  const fit = () => {
    const doc = frame.current?.contentDocument;
    if (doc && frame.current) frame.current.style.height = `${Math.min(doc.documentElement.scrollHeight + 16, 4000)}px`;
  };
  return (
    <>
      {safe.blocked > 0 && !allowRemote && (
        <div class="warning remote" role="status">
          <p>{t("mail.remote_blocked", { count: safe.blocked })}</p>
          <button type="button" onClick={() => setAllowRemote(true)}>{t("mail.remote_allow")}</button>
        </div>
      )}
      <iframe
        ref={frame}
        class="mail-frame"
        title={t("mail.body_frame")}
        sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"
        referrerpolicy="no-referrer"
        srcdoc={safe.document}
        onLoad={fit}
        data-testid="body-frame"
      />
    </>
  );
}

function Attachments({ items }: { items: Attachment[] }) {
  const [urls, setUrls] = useState<string[]>([]);
  useEffect(() => {
    const made = items.map((a) => URL.createObjectURL(new Blob([a.bytes as BlobPart], { type: a.mimeType })));
    setUrls(made);
    return () => made.forEach((u) => URL.revokeObjectURL(u));
  }, [items]);
  if (items.length === 0) return null;
  return (
    <section class="attachments" aria-labelledby="attachments-title">
      <h2 id="attachments-title">{t("mail.attachments", { count: items.length })}</h2>
      <ul>
        {items.map((a, i) => (
          <li key={`${a.filename}-${i}`}>
            <a href={urls[i]} download={a.filename}>{a.filename}</a> <span class="small">{a.mimeType}, {formatBytes(a.bytes.length)}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** After a reload the key is locked again: the password opens it, here. */
function Unlock({ session, onUnlocked }: { session: Session; onUnlocked: () => void }) {
  const form = useForm({ unlock_password: "" }, { unlock_password: (v) => (v ? null : t("signin.password_required")) });
  return (
    <section class="card unlock">
      <h1 id="page-title" tabIndex={-1}>{t("mail.unlock_title")}</h1>
      <p>{t("mail.unlock_body")}</p>
      <form
        noValidate
        onSubmit={form.submit(async (v) => {
          setSession(await signIn(session.username, v.unlock_password));
          onUnlocked();
        })}
      >
        <Field {...form.field("unlock_password")} type="password" label={t("signin.password")} autoComplete="current-password" required />
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("mail.unlock")} />
      </form>
    </section>
  );
}
