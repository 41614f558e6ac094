// Writing: a new message, a reply, a reply to all, a forward. The server
// builds the MIME and, at `sealed` and above, encrypts each copy to the
// recipient's key when it knows one; "only if encrypted" refuses to send
// when a key is missing. Each recipient's key is looked up while typing, as
// sending would find it (hosted here, or their domain's key directory), and
// shown as "will be encrypted" or not. At `end-to-end` the message is
// encrypted here (src/mail/outgoing.ts) to the keys found, and refused, with
// the reason, for recipients without one.
import { useEffect, useState } from "preact/hooks";
import { type Problem, type Schemas, type Session, api, call, fetchAuthorized } from "../../api";
import { asProblem } from "../../credentials";
import { formatBytes, formatDate, t } from "../../i18n";
import { ErrorBox, Field, FormError, PageHeader, Submit, TextArea, useForm } from "../../ui";
import { emailAddress } from "../../validate";
import { type Draft, type Mode, recipients, startDraft } from "../compose";
import { type KeyStatus, lookUpKeys } from "../keys";
import { privateKey } from "../keyring";
import { type Outgoing, encryptedMessage, plainMessage } from "../outgoing";
import { loadMailboxes } from "../folders";
import { deleteMessage, getMessage, rawMessage, remember, remembered } from "../messages";
import { readMessage } from "../reading";

type Account = Schemas["AccountView"];

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function checkRecipients(line: string, required: boolean): string | null {
  const list = recipients(line);
  if (required && list.length === 0) return t("compose.to_required");
  for (const a of list) {
    const problem = emailAddress(a);
    if (problem) return problem;
  }
  return null;
}

async function originalOf(session: Session, id: string) {
  const known = remembered(id);
  if (known) return known;
  await getMessage(id);
  const reading = await readMessage(await rawMessage(id), () => privateKey(session));
  remember(session.accountId ?? "", id, reading);
  return reading;
}

export function Compose({ session, accountId }: { session: Session; accountId: string }) {
  const query = new URLSearchParams(location.search);
  const draftId = query.get("draft");
  const replyId = query.get("reply") ?? draftId;
  const mode = (draftId ? "draft" : replyId ? query.get("mode") ?? "reply" : "new") as Mode;
  const [draft, setDraft] = useState<Draft | null>(replyId ? null : startDraft("new", undefined, session.username, () => "", ""));
  const [loadError, setLoadError] = useState<Problem | null>(null);
  const [account, setAccount] = useState<Account | null>(null);

  useEffect(() => {
    call(api.GET("/v1/accounts/{account_id}", { params: { path: { account_id: accountId } } })).then(setAccount, () => setAccount(null));
  }, [accountId]);
  useEffect(() => {
    if (!replyId) return;
    originalOf(session, replyId).then(
      (original) =>
        setDraft(startDraft(mode, original, session.username, (who, when) => t("compose.wrote", { who, when: when ? formatDate(when, true) : "" }), t("compose.forwarded"))),
      (e) => setLoadError(asProblem(e)),
    );
  }, [replyId, mode]);

  const title = t(mode === "reply" ? "mail.reply" : mode === "all" ? "mail.reply_all" : mode === "forward" ? "mail.forward" : mode === "draft" ? "compose.draft_title" : "mail.compose");
  if (loadError) return <ErrorBox problem={loadError} />;
  if (!draft) return <p class="loading" role="status">{t("common.loading")}</p>;
  return (
    <section class="compose">
      <PageHeader title={title} />
      <ComposeForm key={`${replyId}-${mode}`} session={session} accountId={accountId} draft={draft} account={account} savedAs={draftId} />
    </section>
  );
}

/** Each recipient's key status, looked up once per address (50 at a time), a moment after typing stops. */
function useKeyStatuses(accountId: string, addresses: string[]): Map<string, KeyStatus | "checking"> {
  const [known, setKnown] = useState<Map<string, KeyStatus | "checking">>(new Map());
  const wanted = addresses.map((a) => a.toLowerCase()).filter((a) => !emailAddress(a));
  const key = wanted.join(",");
  useEffect(() => {
    const missing = wanted.filter((a) => !known.has(a)).slice(0, 50);
    if (missing.length === 0) return;
    const timer = setTimeout(() => {
      setKnown((now) => new Map([...now, ...missing.map((a) => [a, "checking"] as const)]));
      lookUpKeys(accountId, missing).then(
        (found) => setKnown((now) => new Map([...now, ...found])),
        // Not known is what the page can say; sending still looks again.
        () => setKnown((now) => new Map([...now, ...missing.map((a) => [a, { kind: "none" }] as const)])),
      );
    }, 400);
    return () => clearTimeout(timer);
  }, [key]);
  return known;
}

function keyLine(who: string, status: KeyStatus | "checking" | undefined, level: Schemas["Level"] | undefined): { text: string; tone: string } {
  if (!level || level === "standard") return { text: t("compose.standard_clear", { who }), tone: "neutral" };
  if (!status || status === "checking") return { text: t("compose.key_checking", { who }), tone: "neutral" };
  if (status.kind === "found") {
    const words = status.source === "hosted" ? "compose.key_hosted" : "compose.key_directory";
    return { text: t(words, { who, fingerprint: status.fingerprint.slice(-16) }), tone: "good" };
  }
  if (level === "end-to-end") return { text: t("compose.key_missing_e2e", { who }), tone: "bad" };
  return { text: t("compose.key_unknown", { who }), tone: "neutral" };
}

interface Sent {
  submitted: Schemas["Submitted"];
  all: string[];
}

/** Encrypts here and submits the whole message; the server checks it is encrypted to every recipient. */
async function sendEncrypted(session: Session, accountId: string, body: Schemas["SubmitMessage"], files: Draft["attachments"], keys: Map<string, KeyStatus | "checking">): Promise<Schemas["Submitted"]> {
  const everyone = [...body.to, ...(body.cc ?? []), ...(body.bcc ?? [])];
  const missing = everyone.filter((a) => {
    const status = keys.get(a.toLowerCase());
    return !status || status === "checking" || status.kind !== "found";
  });
  if (missing.length) throw { status: 422, detail: t("compose.e2e_missing", { who: missing.join(", ") }) } satisfies Problem;
  const openpgp = await import("openpgp");
  const own = await openpgp.readKey({ armoredKey: await (await fetchAuthorized(`/v1/accounts/${accountId}/public-key`)).text() });
  const recipientKeys = everyone.map((a) => (keys.get(a.toLowerCase()) as Extract<KeyStatus, { kind: "found" }>).key);
  const signing = await privateKey(session).catch(() => null);
  const raw = await encryptedMessage(
    { from: session.username, to: body.to, cc: body.cc ?? [], bcc: body.bcc ?? [], subject: body.subject ?? "", text: body.text, attachments: files, inReplyTo: body.in_reply_to ?? null, references: body.references ?? [] },
    [...recipientKeys, own],
    signing,
  );
  const response = await fetchAuthorized(`/v1/accounts/${accountId}/messages?require_encryption=true`, {
    method: "POST",
    headers: { "Content-Type": "message/rfc822" },
    body: raw,
  });
  return (await response.json()) as Schemas["Submitted"];
}

/**
 * Keeps the message in Drafts: in clear for the server to seal at the
 * account's level, or, at `end-to-end`, encrypted here to the account's own
 * key. Answers the stored draft's id.
 */
async function saveDraft(session: Session, accountId: string, message: Outgoing, endToEnd: boolean): Promise<string> {
  const drafts = (await loadMailboxes(accountId)).find((m) => m.role === "drafts");
  if (!drafts) throw { status: 404, detail: t("compose.no_drafts") } satisfies Problem;
  let raw: string;
  if (endToEnd) {
    const openpgp = await import("openpgp");
    const own = await openpgp.readKey({ armoredKey: await (await fetchAuthorized(`/v1/accounts/${accountId}/public-key`)).text() });
    raw = await encryptedMessage(message, [own], await privateKey(session).catch(() => null));
  } else {
    raw = plainMessage(message);
  }
  const response = await fetchAuthorized(`/v1/mailboxes/${drafts.id}/messages?draft=true&seen=true`, {
    method: "POST",
    headers: { "Content-Type": "message/rfc822" },
    body: raw,
  });
  return ((await response.json()) as Schemas["AppendedMessage"]).message_id;
}

function ComposeForm({ session, accountId, draft, account, savedAs }: { session: Session; accountId: string; draft: Draft; account: Account | null; savedAs: string | null }) {
  const [draftId, setDraftId] = useState<string | null>(savedAs);
  const [draftSaved, setDraftSaved] = useState<{ at: Date; error: string | null } | null>(null);
  const [savingDraft, setSavingDraft] = useState(false);
  const [files, setFiles] = useState<{ filename: string; mimeType: string; bytes: Uint8Array }[]>(draft.attachments);
  const [onlyEncrypted, setOnlyEncrypted] = useState(false);
  const [sent, setSent] = useState<Sent | null>(null);
  const form = useForm(
    { to: draft.to, cc: draft.cc, bcc: "", subject: draft.subject, text: draft.text },
    { to: (v) => checkRecipients(v, true), cc: (v) => checkRecipients(v, false), bcc: (v) => checkRecipients(v, false) },
  );
  const endToEnd = account?.level === "end-to-end";
  const everyone = [...recipients(form.values.to), ...recipients(form.values.cc), ...recipients(form.values.bcc)];
  const keys = useKeyStatuses(accountId, everyone);

  const addFiles = async (list: FileList | null) => {
    if (!list) return;
    const added = await Promise.all(Array.from(list).map(async (f) => ({ filename: f.name, mimeType: f.type || "application/octet-stream", bytes: new Uint8Array(await f.arrayBuffer()) })));
    setFiles((now) => [...now, ...added]);
  };

  const send = form.submit(
    async (v) => {
      const body: Schemas["SubmitMessage"] = {
        to: recipients(v.to),
        cc: recipients(v.cc),
        bcc: recipients(v.bcc),
        subject: v.subject,
        text: v.text,
        attachments: files.map((f) => ({ filename: f.filename, media_type: f.mimeType, content_base64: base64(f.bytes) })),
        require_encryption: onlyEncrypted,
        ...(draft.inReplyTo ? { in_reply_to: draft.inReplyTo } : {}),
        ...(draft.references.length ? { references: draft.references } : {}),
      };
      try {
        const submitted = endToEnd
          ? await sendEncrypted(session, accountId, body, files, keys)
          : await call(api.POST("/v1/accounts/{account_id}/messages", { params: { path: { account_id: accountId } }, body }));
        // Sent: its draft is done with.
        if (draftId) await deleteMessage(draftId).catch(() => {});
        setSent({ submitted, all: everyone });
      } catch (e) {
        const problem = asProblem(e);
        if (problem.found?.length) throw { ...problem, detail: t("compose.keys_missing", { who: problem.found.join(", ") }) } satisfies Problem;
        throw problem;
      }
    },
    { to: ["to"], cc: ["cc"], bcc: ["bcc"], subject: ["subject"], text: ["text"] },
  );

  const keepDraft = async () => {
    setSavingDraft(true);
    const v = form.values;
    try {
      const saved = await saveDraft(
        session,
        accountId,
        { from: session.username, to: recipients(v.to), cc: recipients(v.cc), bcc: recipients(v.bcc), subject: v.subject, text: v.text, attachments: files, inReplyTo: draft.inReplyTo, references: draft.references },
        endToEnd,
      );
      // One draft per message: the one saved before goes once the new one is kept.
      if (draftId && draftId !== saved) await deleteMessage(draftId).catch(() => {});
      setDraftId(saved);
      setDraftSaved({ at: new Date(), error: null });
    } catch (e) {
      setDraftSaved({ at: new Date(), error: asProblem(e).detail });
    } finally {
      setSavingDraft(false);
    }
  };

  if (sent) {
    const encrypted = new Set(sent.submitted.encrypted_to.map((a) => a.toLowerCase()));
    return (
      <div class="card" role="status" data-testid="sent">
        <h2>{t("compose.sent")}</h2>
        <ul class="recipients">
          {sent.all.map((a) => (
            <li key={a} class={encrypted.has(a.toLowerCase()) ? "good" : "bad"}>
              {encrypted.has(a.toLowerCase()) ? t("compose.was_encrypted", { who: a }) : t("compose.was_clear", { who: a })}
            </li>
          ))}
        </ul>
        <p><a href="/mail/sent">{t("folder.sent")}</a> · <a href="/mail/inbox">{t("folder.inbox")}</a></p>
      </div>
    );
  }

  return (
    <form noValidate onSubmit={send} class="compose-form">
      <Field {...form.field("to")} label={t("mail.to")} hint={t("compose.recipients_hint")} type="text" autoComplete="email" required />
      <div class="row">
        <Field {...form.field("cc")} label={t("mail.cc")} type="text" autoComplete="email" />
        <Field {...form.field("bcc")} label={t("compose.bcc")} type="text" autoComplete="email" />
      </div>
      {everyone.length > 0 && (
        <div class="recipients-status">
          <p class="small" id="key-status-title">{t("compose.key_status")}</p>
          <ul class="recipients" aria-labelledby="key-status-title">
            {everyone.map((a) => {
              const line = keyLine(a, keys.get(a.toLowerCase()), account?.level);
              return <li key={a} class={line.tone} data-testid="key-status">{line.text}</li>;
            })}
          </ul>
        </div>
      )}
      <Field {...form.field("subject")} label={t("mail.subject")} />
      <TextArea {...form.field("text")} label={t("compose.body")} rows={12} />
      <div class="field">
        <label for="compose-files">{t("compose.attach")}</label>
        <input id="compose-files" type="file" multiple onChange={(e) => void addFiles(e.currentTarget.files)} />
      </div>
      {files.length > 0 && (
        <ul class="files">
          {files.map((f, i) => (
            <li key={`${f.filename}-${i}`}>
              {f.filename} <span class="small">{formatBytes(f.bytes.length)}</span>{" "}
              <button type="button" class="link" onClick={() => setFiles(files.filter((_, j) => j !== i))} aria-label={t("compose.remove_file", { name: f.filename })}>
                {t("common.remove")}
              </button>
            </li>
          ))}
        </ul>
      )}
      {!endToEnd && (
      <label class="choice">
        <input type="checkbox" checked={onlyEncrypted} onChange={(e) => setOnlyEncrypted(e.currentTarget.checked)} />
        <span>
          <span class="strong">{t("compose.only_encrypted")}</span>
          <span class="hint block">{t("compose.only_encrypted_hint")}</span>
        </span>
      </label>
      )}
      {endToEnd && <p class="notice">{t("compose.e2e_note")}</p>}
      <FormError message={form.formError} />
      <div class="buttons">
        <Submit busy={form.busy} label={t("compose.send")} />
        <button type="button" disabled={savingDraft} onClick={keepDraft}>{savingDraft ? t("common.working") : t("compose.save_draft")}</button>
        <a class="button" href="/mail/inbox">{t("common.cancel")}</a>
      </div>
      <p class="small" role="status" data-testid="draft-status">
        {draftSaved && (draftSaved.error ?? t("compose.draft_saved", { time: formatDate(draftSaved.at.toISOString(), true) }))}
      </p>
    </form>
  );
}
