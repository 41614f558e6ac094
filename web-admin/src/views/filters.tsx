// Mail rules: a Sieve script that runs on arrival, before the message is
// sealed; the tenant-wide one (every account, before the account's own) in
// the admin app, an account's own in the users' app. Made with simple rules
// (if a header contains or is some text, file into a folder, mark as read
// or discard), whose script is shown as it will run; or written as text.
// The API compiles it when it is saved and says where a mistake is (line
// and column).
import { useRef, useState } from "preact/hooks";
import { type Problem, type Schemas, api, call } from "../api";
import { type Key, formatDate, t } from "../i18n";
import { ACTIONS, type Action, HEADERS, type Header, MATCHES, type Match, type Rule, generateSieve, newRule, parseSieve } from "../sieve";
import { Dialog, ErrorBox, Field, FormError, Select, Submit, TextArea, fieldId, useLoad } from "../ui";

type Script = Schemas["SieveScript"];
type Mode = "rules" | "text";
/** A rule as edited here: `key` keeps its fields apart from the other rules'. */
type Editing = Rule & { key: number };
type RuleErrors = Record<number, { value?: string; folder?: string }>;

const TEXT_ID = fieldId("sieve_script");

/** Where a set of rules is kept, and how the page speaks of it. */
export interface RuleStore {
  id: string;
  load(): Promise<Script | null>;
  save(content: string): Promise<Script>;
  remove(): Promise<void>;
  words: { title: Key; lead: Key; removeTitle: Key; removeWarning: Key };
}

/** No script yet is a 404: the page then starts from an empty rule. */
async function orNull<T>(load: Promise<T>): Promise<T | null> {
  try {
    return await load;
  } catch (e) {
    if ((e as Problem).status === 404) return null;
    throw e;
  }
}

export function tenantRules(tenantId: string): RuleStore {
  const path = { params: { path: { tenant_id: tenantId } } };
  return {
    id: tenantId,
    load: () => orNull(call(api.GET("/v1/tenants/{tenant_id}/sieve", path))),
    save: (content) => call(api.PUT("/v1/tenants/{tenant_id}/sieve", { ...path, body: { content, active: true } })),
    remove: async () => {
      await call(api.DELETE("/v1/tenants/{tenant_id}/sieve", path));
    },
    words: { title: "filters.title", lead: "filters.lead", removeTitle: "filters.remove_title", removeWarning: "filters.remove_warning" },
  };
}

/** An account's own rules: its active script, or one named `rules` once saved (keep one store per account: it remembers the name). */
export function accountRules(accountId: string): RuleStore {
  let name = "rules";
  const at = () => ({ params: { path: { account_id: accountId, name } } });
  return {
    id: accountId,
    load: async () => {
      const listed = await call(api.GET("/v1/accounts/{account_id}/sieve", { params: { path: { account_id: accountId } } }));
      const active = listed.items.find((s) => s.active);
      if (!active) return null;
      name = active.name;
      return active;
    },
    save: (content) => call(api.PUT("/v1/accounts/{account_id}/sieve/{name}", { ...at(), body: { content, active: true } })),
    remove: async () => {
      await call(api.DELETE("/v1/accounts/{account_id}/sieve/{name}", at()));
    },
    words: { title: "filters.own_title", lead: "filters.own_lead", removeTitle: "filters.own_remove_title", removeWarning: "filters.own_remove_warning" },
  };
}

export function MailRules({ store }: { store: RuleStore }) {
  const script = useLoad(() => store.load(), [store.id]);
  if (script.error) return <ErrorBox problem={script.error} retry={script.reload} />;
  if (script.data === undefined) return <div class="card bone-block" aria-busy="true" />;
  return <RuleEditor key={store.id} store={store} initial={script.data} />;
}

function RuleEditor({ store, initial }: { store: RuleStore; initial: Script | null }) {
  const nextKey = useRef(0);
  const withKeys = (rules: Rule[]): Editing[] => rules.map((r) => ({ ...r, key: nextKey.current++ }));
  const parsed = initial ? parseSieve(initial.content) : [];
  const [stored, setStored] = useState<Script | null>(initial);
  const [mode, setMode] = useState<Mode>(parsed ? "rules" : "text");
  const [rules, setRules] = useState<Editing[]>(() => withKeys(parsed && parsed.length > 0 ? parsed : [newRule()]));
  const [text, setText] = useState(initial?.content ?? "");
  const [notSimple, setNotSimple] = useState(parsed === null);
  const [ruleErrors, setRuleErrors] = useState<RuleErrors>({});
  const [textError, setTextError] = useState<string | null>(null);
  const [formError, setFormError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [removing, setRemoving] = useState(false);

  const generated = generateSieve(rules);

  const update = (key: number, change: Partial<Rule>) => {
    setRules((rs) => rs.map((r) => (r.key === key ? { ...r, ...change } : r)));
    const fixed = Object.keys(change).filter((f) => f === "value" || f === "folder");
    if (fixed.length > 0 && ruleErrors[key]) {
      setRuleErrors((errors) => ({ ...errors, [key]: { ...errors[key], ...Object.fromEntries(fixed.map((f) => [f, undefined])) } }));
    }
  };
  const add = () => {
    const rule = withKeys([newRule()])[0]!;
    setRules((rs) => [...rs, rule]);
    requestAnimationFrame(() => document.getElementById(`rule-${rule.key}-header`)?.focus());
  };
  const removeRule = (key: number) => setRules((rs) => rs.filter((r) => r.key !== key));

  const toText = () => {
    setText(generated);
    setTextError(null);
    setNotSimple(false);
    setMode("text");
  };
  const toRules = () => {
    const read = parseSieve(text);
    if (!read) {
      setNotSimple(true);
      return;
    }
    setRules(withKeys(read));
    setRuleErrors({});
    setNotSimple(false);
    setMode("rules");
  };
  const startOver = () => {
    setRules(withKeys([newRule()]));
    setRuleErrors({});
    setNotSimple(false);
    setMode("rules");
  };

  const check = (): string | null => {
    const errors: RuleErrors = {};
    let first: string | null = null;
    for (const r of rules) {
      const e: { value?: string; folder?: string } = {};
      if (r.value.trim() === "") e.value = t("filters.value_required");
      if (r.action === "fileinto" && r.folder.trim() === "") e.folder = t("filters.folder_required");
      if (e.value || e.folder) {
        errors[r.key] = e;
        first ??= `rule-${r.key}-${e.value ? "value" : "folder"}`;
      }
    }
    setRuleErrors(errors);
    return first;
  };

  const save = async (event: Event) => {
    event.preventDefault();
    setFormError(null);
    setTextError(null);
    setNotice(null);
    let content: string;
    if (mode === "rules") {
      if (rules.length === 0) {
        setFormError(t("filters.need_rule"));
        return;
      }
      const invalid = check();
      if (invalid) {
        document.getElementById(invalid)?.focus();
        return;
      }
      content = generated;
    } else {
      if (text.trim() === "") {
        setTextError(t("filters.need_text"));
        document.getElementById(TEXT_ID)?.focus();
        return;
      }
      content = text;
    }
    setBusy(true);
    try {
      const kept = await store.save(content);
      setStored(kept);
      setNotice(t("filters.saved"));
    } catch (e) {
      // A script that does not compile: the API says the line and column.
      const detail = (e as Problem).detail ?? String(e);
      if (mode === "text") {
        setTextError(detail);
        document.getElementById(TEXT_ID)?.focus();
      } else {
        setFormError(detail);
      }
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    setFormError(null);
    setNotice(null);
    try {
      await store.remove();
    } catch (e) {
      // Already gone is what was asked.
      if ((e as Problem).status !== 404) {
        setFormError((e as Problem).detail ?? String(e));
        setRemoving(false);
        return;
      }
    }
    setRemoving(false);
    setStored(null);
    setText("");
    startOver();
    setNotice(t("filters.removed"));
  };

  return (
    <>
      <form class="card form-grid mail-rules" noValidate onSubmit={save} aria-labelledby="rules-title">
        <h2 id="rules-title">{t(store.words.title)}</h2>
        <p class="lead">{t(store.words.lead)}</p>
        <p class="small">
          {stored
            ? t(stored.active ? "filters.active" : "filters.inactive", { date: formatDate(stored.updated_at, true) })
            : t("filters.none")}
        </p>
        <div class="mode-switch" role="group" aria-label={t("filters.mode")}>
          <button type="button" aria-pressed={mode === "rules" ? "true" : "false"} onClick={() => mode !== "rules" && toRules()}>{t("filters.simple")}</button>
          <button type="button" aria-pressed={mode === "text" ? "true" : "false"} onClick={() => mode !== "text" && toText()}>{t("filters.as_text")}</button>
        </div>
        {mode === "rules" ? (
          <>
            <p class="hint">{t("filters.order")}</p>
            {rules.length === 0 && <p class="empty">{t("filters.no_rules")}</p>}
            {rules.map((r, i) => (
              <RuleFields key={r.key} rule={r} n={i + 1} errors={ruleErrors[r.key] ?? {}} onChange={(change) => update(r.key, change)} onRemove={() => removeRule(r.key)} />
            ))}
            <div class="buttons">
              <button type="button" onClick={add}>{t("filters.add")}</button>
            </div>
            <h3 id="script-title">{t("filters.script")}</h3>
            <pre class="script" tabIndex={0} role="region" aria-labelledby="script-title" data-testid="sieve-script">
              {generated || t("filters.script_empty")}
            </pre>
          </>
        ) : (
          <>
            {notSimple && (
              <div class="warning">
                <p>{t("filters.not_simple")}</p>
                <button type="button" onClick={startOver}>{t("filters.start_over")}</button>
              </div>
            )}
            <TextArea
              id={TEXT_ID}
              label={t("filters.script_text")}
              hint={t("filters.script_hint")}
              value={text}
              rows={16}
              error={textError ?? undefined}
              placeholder={'require ["fileinto"];\n\nif header :contains "Subject" "invoice" {\n    fileinto "Invoices";\n}'}
              onInput={(e) => {
                setText(e.currentTarget.value);
                setTextError(null);
              }}
            />
          </>
        )}
        <FormError message={formError} />
        {notice && <p class="notice" role="status">{notice}</p>}
        <div class="buttons">
          <Submit busy={busy} label={t("filters.save")} />
          {stored && <button type="button" class="danger" onClick={() => setRemoving(true)}>{t("filters.remove")}</button>}
        </div>
      </form>
      {removing && (
        <Dialog title={t(store.words.removeTitle)} onClose={() => setRemoving(false)}>
          <p>{t(store.words.removeWarning)}</p>
          <div class="buttons">
            <button type="button" class="danger" onClick={remove}>{t("filters.remove")}</button>
            <button type="button" onClick={() => setRemoving(false)}>{t("common.cancel")}</button>
          </div>
        </Dialog>
      )}
    </>
  );
}

function RuleFields({ rule, n, errors, onChange, onRemove }: {
  rule: Editing;
  n: number;
  errors: { value?: string | undefined; folder?: string | undefined };
  onChange: (change: Partial<Rule>) => void;
  onRemove: () => void;
}) {
  const id = (what: string) => `rule-${rule.key}-${what}`;
  return (
    <fieldset class="rule">
      <legend>{t("filters.rule", { n })}</legend>
      <div class="rule-fields">
        <Select
          id={id("header")}
          label={t("filters.header")}
          value={rule.header}
          onInput={(e) => onChange({ header: e.currentTarget.value as Header })}
          options={HEADERS.map((h) => ({ value: h, label: t(`sieveheader.${h}` as Key) }))}
        />
        <Select
          id={id("match")}
          label={t("filters.match")}
          value={rule.match}
          onInput={(e) => onChange({ match: e.currentTarget.value as Match })}
          options={MATCHES.map((m) => ({ value: m, label: t(`sievematch.${m}` as Key) }))}
        />
        <Field id={id("value")} label={t("filters.value")} value={rule.value} error={errors.value} autoComplete="off" onInput={(e) => onChange({ value: e.currentTarget.value })} />
        <Select
          id={id("action")}
          label={t("filters.action")}
          value={rule.action}
          onInput={(e) => onChange({ action: e.currentTarget.value as Action })}
          options={ACTIONS.map((a) => ({ value: a, label: t(`sieveaction.${a}` as Key) }))}
        />
        {rule.action === "fileinto" && (
          <Field id={id("folder")} label={t("filters.folder")} value={rule.folder} error={errors.folder} autoComplete="off" onInput={(e) => onChange({ folder: e.currentTarget.value })} />
        )}
        <button type="button" onClick={onRemove} aria-label={t("filters.remove_rule_which", { n })}>{t("filters.remove_rule")}</button>
      </div>
    </fieldset>
  );
}
