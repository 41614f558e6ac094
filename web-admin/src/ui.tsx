// Shared pieces: data loading, forms with client-side checks and the API's
// problem details next to the right field, tables with loading and empty
// states that keep their height, badges, copy buttons, dialogs.
import type { ComponentChildren, TargetedEvent } from "preact";
import { useCallback, useEffect, useId, useRef, useState } from "preact/hooks";
import type { Problem } from "./api";
import { type Key, t } from "./i18n";
import type { Check } from "./validate";

export interface Loaded<T> {
  data?: T | undefined;
  error?: Problem | undefined;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change; keeps the last data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: Problem; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error: Problem) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]); // `load` is new on every render: `deps` say when it changed
  return { ...state, reload: useCallback(() => setTick((n) => n + 1), []) };
}

/**
 * A form's values, client-side errors, and the API's answer. A problem whose
 * `detail` names a field (in backquotes, as the API writes them, or by the
 * value that was typed) is shown next to that field; anything else above the
 * submit button.
 */
export function useForm<K extends string>(initial: Record<K, string>, checks: Partial<Record<K, Check | null>> = {}) {
  const [values, setValues] = useState(initial);
  const [errors, setErrors] = useState<Partial<Record<K, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const set = (key: K) => (event: TargetedEvent<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>) => {
    const value = event.currentTarget.value;
    setValues((v) => ({ ...v, [key]: value }));
    if (errors[key]) setErrors((e) => ({ ...e, [key]: undefined }));
  };

  const submit = (action: (values: Record<K, string>) => Promise<void>, aliases: Partial<Record<K, string[]>> = {}) =>
    async (event?: Event) => {
      event?.preventDefault();
      const found: Partial<Record<K, string>> = {};
      for (const key of Object.keys(checks) as K[]) {
        const failure = checks[key]?.(values[key]);
        if (failure) found[key] = failure;
      }
      setErrors(found);
      setFormError(null);
      const first = Object.keys(found)[0];
      if (first) {
        document.getElementById(fieldId(first))?.focus();
        return;
      }
      setBusy(true);
      try {
        await action(values);
      } catch (e) {
        const problem = e as Problem & { field?: string };
        const key =
          problem.field && problem.field in values ? (problem.field as K) : problemField(problem.detail ?? "", values, aliases);
        if (key) {
          setErrors({ [key]: problem.detail } as Partial<Record<K, string>>);
          document.getElementById(fieldId(key))?.focus();
        } else {
          setFormError(problem.detail ?? String(e));
        }
      } finally {
        setBusy(false);
      }
    };

  return { values, setValues, errors, formError, busy, set, submit, field: (key: K) => ({ id: fieldId(key), value: values[key], onInput: set(key), error: errors[key] }) };
}

export function fieldId(key: string): string {
  return `field-${key}`;
}

/** Which field a problem's `detail` is about, if it says. */
export function problemField<K extends string>(detail: string, values: Record<K, string>, aliases: Partial<Record<K, string[]>> = {}): K | null {
  const keys = Object.keys(values) as K[];
  for (const key of keys) {
    const names = [key, ...(aliases[key] ?? [])];
    if (names.some((n) => detail.includes(`\`${n}\``))) return key;
  }
  for (const key of keys) {
    const value = values[key].trim();
    if (value.length > 0 && (detail.includes(`\`${value}\``) || detail.includes(JSON.stringify(value)))) return key;
  }
  for (const key of keys) {
    if ((aliases[key] ?? []).some((n) => !n.startsWith("`") && detail.toLowerCase().includes(n.toLowerCase()))) return key;
  }
  return null;
}

interface FieldProps {
  id: string;
  label: string;
  value: string;
  onInput: (e: TargetedEvent<HTMLInputElement>) => void;
  error?: string | undefined;
  hint?: string;
  type?: string;
  required?: boolean;
  autoComplete?: string;
  placeholder?: string;
  inputMode?: "numeric" | "email" | "text";
}

/** What a field's control is described by: its hint and its error, when shown. */
function describedBy(p: { id: string; hint?: string | undefined; error?: string | undefined }): string | undefined {
  return [p.hint ? `${p.id}-hint` : null, p.error ? `${p.id}-error` : null].filter(Boolean).join(" ") || undefined;
}

/** The label, hint and error around one control, wired by id. */
function Framed(p: { id: string; label: string; hint?: string | undefined; error?: string | undefined; children: ComponentChildren }) {
  return (
    <div class={`field${p.error ? " invalid" : ""}`}>
      <label for={p.id}>{p.label}</label>
      {p.children}
      {p.hint && <p class="hint" id={`${p.id}-hint`}>{p.hint}</p>}
      <p class="error" id={`${p.id}-error`} role={p.error ? "alert" : undefined}>{p.error ?? ""}</p>
    </div>
  );
}

export function Field(p: FieldProps) {
  return (
    <Framed id={p.id} label={p.label} hint={p.hint} error={p.error}>
      <input
        id={p.id}
        name={p.id}
        type={(p.type ?? "text") as "text"}
        value={p.value}
        onInput={p.onInput}
        required={p.required}
        autoComplete={p.autoComplete}
        placeholder={p.placeholder}
        inputMode={p.inputMode}
        aria-invalid={p.error ? "true" : undefined}
        aria-describedby={describedBy(p)}
      />
    </Framed>
  );
}

interface TextAreaProps {
  id: string;
  label: string;
  value: string;
  onInput: (e: TargetedEvent<HTMLTextAreaElement>) => void;
  error?: string | undefined;
  hint?: string;
  rows?: number;
  placeholder?: string;
}

/** A multi-line Field: same label, hint and error wiring. */
export function TextArea(p: TextAreaProps) {
  return (
    <Framed id={p.id} label={p.label} hint={p.hint} error={p.error}>
      <textarea
        id={p.id}
        name={p.id}
        value={p.value}
        onInput={p.onInput}
        rows={p.rows ?? 6}
        placeholder={p.placeholder}
        spellcheck={false}
        aria-invalid={p.error ? "true" : undefined}
        aria-describedby={describedBy(p)}
      />
    </Framed>
  );
}

interface SelectProps {
  id: string;
  label: string;
  value: string;
  onInput: (e: TargetedEvent<HTMLSelectElement>) => void;
  options: { value: string; label: string }[];
  error?: string | undefined;
  hint?: string;
}

export function Select(p: SelectProps) {
  const hintId = `${p.id}-hint`;
  return (
    <div class={`field${p.error ? " invalid" : ""}`}>
      <label for={p.id}>{p.label}</label>
      <select id={p.id} name={p.id} value={p.value} onInput={p.onInput} aria-describedby={p.hint ? hintId : undefined}>
        {p.options.map((o) => (
          <option value={o.value} key={o.value}>{o.label}</option>
        ))}
      </select>
      {p.hint && <p class="hint" id={hintId}>{p.hint}</p>}
      <p class="error" role={p.error ? "alert" : undefined}>{p.error ?? ""}</p>
    </div>
  );
}

export function FormError({ message }: { message: string | null }) {
  return message ? <p class="form-error" role="alert">{message}</p> : null;
}

export function Submit({ busy, label }: { busy: boolean; label: string }) {
  return (
    <button type="submit" class="primary" disabled={busy} aria-busy={busy ? "true" : undefined}>
      {busy ? t("common.working") : label}
    </button>
  );
}

export function PageHeader({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <header class="page-header">
      <h1 tabIndex={-1} id="page-title">{title}</h1>
      {children && <div class="actions">{children}</div>}
    </header>
  );
}

export function ErrorBox({ problem, retry }: { problem: Problem; retry?: () => void }) {
  return (
    <div class="error-box" role="alert">
      <p>{problem.detail}</p>
      {retry && (
        <button type="button" onClick={retry}>{t("common.retry")}</button>
      )}
    </div>
  );
}

export interface Column<T> {
  label: string;
  cell: (row: T) => ComponentChildren;
  class?: string;
}

/** A table that keeps its height while loading (skeleton rows) and says when it is empty. */
export function Table<T>({ caption, columns, rows, loading, empty, rowKey, skeletonRows = 3 }: {
  caption: string;
  columns: Column<T>[];
  rows: T[] | undefined;
  loading: boolean;
  empty: string;
  rowKey: (row: T) => string;
  skeletonRows?: number;
}) {
  return (
    // Focusable, so a keyboard can scroll it when it is wider than the screen.
    <div class="table-wrap" tabIndex={0} role="region" aria-label={caption}>
      <table>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" class={c.class} key={c.label}>{c.label}</th>
            ))}
          </tr>
        </thead>
        <tbody aria-busy={loading && !rows ? "true" : undefined}>
          {!rows &&
            Array.from({ length: skeletonRows }, (_, i) => (
              <tr class="skeleton" key={`s${i}`}>
                {columns.map((c) => (
                  <td key={c.label}><span class="bone" /></td>
                ))}
              </tr>
            ))}
          {rows && rows.length === 0 && (
            <tr>
              <td colSpan={columns.length} class="empty">{empty}</td>
            </tr>
          )}
          {rows?.map((row) => (
            <tr key={rowKey(row)}>
              {columns.map((c) => (
                <td class={c.class} data-label={c.label} key={c.label}>{c.cell(row)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const STATUS_TONE: Record<string, string> = {
  active: "good", verified: "good", paid: "good", up: "good", delivered: "good", complied: "good", ready: "good",
  suspended: "warn", pending: "warn", past_due: "warn", unknown: "neutral", queued: "neutral", deferred: "warn",
  closed: "bad", missing: "bad", wrong: "bad", down: "bad", failed: "bad", dead: "bad", revoked: "bad", deleted: "bad",
};

export function Badge({ status, label }: { status: string; label?: string }) {
  return <span class={`badge ${STATUS_TONE[status] ?? "neutral"}`}>{label ?? statusLabel(status)}</span>;
}

/** The translated word for a status-like value (`status.active`, `billingstatus.past_due`…), or the value itself. */
export function statusLabel(status: string, prefix = "status"): string {
  const key = `${prefix}.${status}` as Key;
  const text = t(key);
  return text === key ? status : text;
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Without clipboard permission, select the text so Ctrl-C works.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand?.("copy");
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 2000);
  };
  return (
    <button type="button" class="copy" onClick={copy} aria-label={`${t("common.copy")}: ${label}`}>
      <span aria-live="polite">{copied ? t("common.copied") : t("common.copy")}</span>
    </button>
  );
}

export function QuotaBar({ used, total, label }: { used: number; total: number | null; label: string }) {
  const ratio = total && total > 0 ? Math.min(1, used / total) : 0;
  const tone = ratio >= 0.9 ? "bad" : ratio >= 0.75 ? "warn" : "good";
  return (
    <div class="quota">
      <div
        class={`bar ${tone}`}
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={total ?? 0}
        aria-valuenow={used}
      >
        <span style={{ width: `${(ratio * 100).toFixed(1)}%` }} />
      </div>
    </div>
  );
}

/** A modal dialog: focus moves in, Escape closes (when allowed), focus returns. */
export function Dialog({ title, children, onClose }: { title: string; children: ComponentChildren; onClose?: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const previous = document.activeElement as HTMLElement | null;
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector<HTMLElement>("input, button, [href], select, textarea");
    first?.focus();
    return () => previous?.focus?.();
  }, []);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        onClose?.();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {children}
    </dialog>
  );
}

export function Loading() {
  return <p class="loading" role="status">{t("common.loading")}</p>;
}
