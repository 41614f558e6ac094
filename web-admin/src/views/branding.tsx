// Branding: name, colours (checked for contrast as you type), links, logo and
// favicon, custom hostnames; a live preview of the signup page with the
// values being typed, and of a system mail as the server renders it.
import { useEffect, useState } from "preact/hooks";
import { type Schemas, api, call, fetchAuthorized } from "../api";
import { type Key, currentLanguage, t } from "../i18n";
import { Badge, CopyButton, ErrorBox, Field, FormError, Select, Submit, useForm, useLoad } from "../ui";
import { brandColor, contrast, domainName, emailAddress, httpsUrl, productName } from "../validate";

type Brand = Schemas["BrandFields"];
const FIELDS = ["product_name", "primary_color", "accent_color", "support_address", "legal_url", "privacy_url", "default_language"] as const;
type BrandKey = (typeof FIELDS)[number];

const optional = (check: (v: string) => string | null) => (v: string) => (v.trim() === "" ? null : check(v.trim()));

export function Branding({ tenantId }: { tenantId: string }) {
  const branding = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/branding", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const [logo, setLogo] = useState<string | null>(null);
  const [previewTick, setPreviewTick] = useState(0);
  const empty = Object.fromEntries(FIELDS.map((f) => [f, ""])) as Record<BrandKey, string>;
  const form = useForm(empty, {
    product_name: optional(productName),
    primary_color: optional(brandColor("primary_color")),
    accent_color: optional(brandColor("accent_color")),
    support_address: optional(emailAddress),
    legal_url: optional(httpsUrl("legal_url")),
    privacy_url: optional(httpsUrl("privacy_url")),
  });
  const [saved, setSaved] = useState(false);
  // The form opens only once the saved values are in it: enabling it on the
  // data's arrival and filling it in a later effect left a moment where what
  // was typed got replaced.
  const [filled, setFilled] = useState(false);

  useEffect(() => {
    const own = branding.data?.own;
    if (own) {
      form.setValues(Object.fromEntries(FIELDS.map((f) => [f, own[f] ?? ""])) as Record<BrandKey, string>);
      setFilled(true);
    }
  }, [branding.data]);

  useEffect(() => {
    let url: string | null = null;
    if (branding.data?.logo_url) {
      fetchAuthorized(branding.data.logo_url)
        .then((r) => r.blob())
        .then((b) => {
          url = URL.createObjectURL(b);
          setLogo(url);
        })
        .catch(() => setLogo(null));
    } else setLogo(null);
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [branding.data?.logo_url]);

  const effective = branding.data?.effective;
  const v = form.values;
  // What the preview shows: what is typed, else what is inherited.
  const live: Brand = Object.fromEntries(FIELDS.map((f) => [f, v[f].trim() || effective?.[f] || null])) as Brand;
  const liveColor = (f: "primary_color" | "accent_color", fallback: string) =>
    v[f] && contrast(v[f], "#ffffff") !== null ? v[f] : (effective?.[f] ?? fallback);

  const save = form.submit(async (values) => {
    setSaved(false);
    const body = Object.fromEntries(FIELDS.map((f) => [f, values[f].trim() || null])) as Brand;
    await call(api.PUT("/v1/tenants/{tenant_id}/branding", { params: { path: { tenant_id: tenantId } }, body }));
    setSaved(true);
    branding.reload();
    setPreviewTick((n) => n + 1);
  });

  if (branding.error) return <ErrorBox problem={branding.error} retry={branding.reload} />;
  const inherited = (f: BrandKey) => (effective?.[f] && !branding.data?.own[f] ? t("branding.inherited", { value: String(effective[f]) }) : undefined);

  return (
    <div class="branding">
      <form class="card form-grid" noValidate onSubmit={save} aria-labelledby="brand-title">
        <h2 id="brand-title">{t("branding.identity")}</h2>
        {/* Not editable before the saved values arrive: they would replace what was typed. */}
        <fieldset disabled={!filled} aria-busy={filled ? undefined : "true"}>
        <Field {...form.field("product_name")} label={t("branding.product_name")} hint={inherited("product_name")} autoComplete="off" />
        <div class="row">
          <ColorField form={form} name="primary_color" inherited={effective?.primary_color} label={t("branding.primary_color")} hint={inherited("primary_color") ?? t("branding.primary_hint")} />
          <ColorField form={form} name="accent_color" inherited={effective?.accent_color} label={t("branding.accent_color")} hint={inherited("accent_color") ?? t("branding.accent_hint")} />
        </div>
        <Field {...form.field("support_address")} label={t("branding.support_address")} type="email" hint={inherited("support_address")} autoComplete="off" />
        <div class="row">
          <Field {...form.field("legal_url")} label={t("branding.legal_url")} type="url" placeholder="https://" hint={inherited("legal_url")} />
          <Field {...form.field("privacy_url")} label={t("branding.privacy_url")} type="url" placeholder="https://" hint={inherited("privacy_url")} />
        </div>
        <Select
          {...form.field("default_language")}
          label={t("branding.default_language")}
          options={[{ value: "", label: t("branding.inherit") }, { value: "en", label: "English" }, { value: "fr", label: "Français" }]}
        />
        </fieldset>
        <FormError message={form.formError} />
        {saved && <p class="notice" role="status">{t("common.saved")}</p>}
        <Submit busy={form.busy || !filled} label={t("common.save")} />
      </form>

      <section class="card" aria-labelledby="preview-title">
        <h2 id="preview-title">{t("branding.preview_signup")}</h2>
        <SignupPreview brand={live} primary={liveColor("primary_color", "#1d4ed8")} accent={liveColor("accent_color", "#0f766e")} logo={logo} />
      </section>

      <section class="card" aria-labelledby="mail-preview-title">
        <h2 id="mail-preview-title">{t("branding.preview_mail")}</h2>
        <p class="hint">{t("branding.preview_mail_hint")}</p>
        <MailPreview tenantId={tenantId} tick={previewTick} />
      </section>

      <Assets tenantId={tenantId} onChange={() => { branding.reload(); setPreviewTick((n) => n + 1); }} />
      <Hostnames tenantId={tenantId} />
    </div>
  );
}

function ColorField({ form, name, label, hint, inherited }: { form: ReturnType<typeof useForm<BrandKey>>; name: "primary_color" | "accent_color"; label: string; hint?: string | undefined; inherited?: string | null | undefined }) {
  const f = form.field(name);
  const valid = /^#[0-9a-fA-F]{6}$/.test(f.value);
  const ratio = valid ? contrast(f.value, "#ffffff") : null;
  return (
    <div class={`field color${f.error ? " invalid" : ""}`}>
      <label for={f.id}>{label}</label>
      <div class="color-inputs">
        <input
          type="color"
          aria-label={t("branding.pick", { what: label })}
          value={valid ? f.value : (inherited ?? "#000000")}
          onInput={f.onInput}
        />
        <input id={f.id} name={f.id} value={f.value} onInput={f.onInput} placeholder="#1d4ed8" aria-invalid={f.error ? "true" : undefined} aria-describedby={`${f.id}-hint ${f.id}-error`} spellcheck={false} />
      </div>
      <p class="hint" id={`${f.id}-hint`}>
        {ratio !== null ? t("branding.contrast", { ratio: ratio.toFixed(2) }) + (ratio < 4.5 ? ` — ${t("branding.contrast_low")}` : "") : (hint ?? "")}
      </p>
      <p class="error" id={`${f.id}-error`} role={f.error ? "alert" : undefined}>{f.error ?? ""}</p>
    </div>
  );
}

/** The public signup page as it will look with these values (drawn here, not fetched). */
function SignupPreview({ brand, primary, accent, logo }: { brand: Brand; primary: string; accent: string; logo: string | null }) {
  const name = brand.product_name ?? "";
  return (
    <div class="signup-preview" data-testid="signup-preview" style={{ "--p": primary, "--a": accent } as Record<string, string>} aria-label={t("branding.preview_signup")} role="img">
      <div class="sp-bar">
        {logo ? <img src={logo} alt="" height={28} /> : <span class="sp-mark" />}
        <span class="sp-name">{name}</span>
      </div>
      <div class="sp-body">
        <p class="sp-title">{t("branding.sp_title", { name })}</p>
        <span class="sp-input">{t("branding.sp_address")}</span>
        <span class="sp-input">{t("branding.sp_password")}</span>
        <span class="sp-button" data-testid="preview-button">{t("branding.sp_create")}</span>
        <span class="sp-link">{t("branding.sp_terms")}</span>
      </div>
    </div>
  );
}

function MailPreview({ tenantId, tick }: { tenantId: string; tick: number }) {
  const [template, setTemplate] = useState("welcome");
  const language = currentLanguage();
  const rendered = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/templates/{template}/{language}/preview", { params: { path: { tenant_id: tenantId, template, language } } })),
    [tenantId, template, language, tick],
  );
  const names = ["welcome", "password_reset", "quota_warning", "payment_failed", "delivery_failure", "admission"];
  return (
    <>
      <div class="field">
        <label for="preview-template">{t("branding.template")}</label>
        <select id="preview-template" value={template} onInput={(e) => setTemplate(e.currentTarget.value)}>
          {names.map((n) => <option key={n} value={n}>{t(`template.${n}` as Key)}</option>)}
        </select>
      </div>
      {rendered.error && <ErrorBox problem={rendered.error} retry={rendered.reload} />}
      <p class="subject"><strong>{t("branding.subject")}</strong> {rendered.data?.subject ?? "…"}</p>
      <iframe class="mail-preview" title={t("branding.preview_mail")} sandbox="allow-same-origin" srcDoc={rendered.data?.html ?? ""} data-testid="mail-preview" />
    </>
  );
}

function Assets({ tenantId, onChange }: { tenantId: string; onChange: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const upload = (kind: "logo" | "favicon") => async (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return;
    setError(null);
    setDone(null);
    try {
      await fetchAuthorized(`/v1/tenants/${tenantId}/branding/${kind}`, { method: "PUT", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      setDone(kind === "logo" ? t("branding.logo_saved") : t("branding.favicon_saved"));
      onChange();
    } catch (err) {
      setError((err as { detail: string }).detail);
    } finally {
      input.value = "";
    }
  };
  return (
    <section class="card" aria-labelledby="assets-title">
      <h2 id="assets-title">{t("branding.images")}</h2>
      <div class="row">
        <div class="field">
          <label for="logo-file">{t("branding.logo")}</label>
          <input id="logo-file" type="file" accept="image/png,image/webp,image/svg+xml" onChange={upload("logo")} aria-describedby="logo-hint" />
          <p class="hint" id="logo-hint">{t("branding.logo_hint")}</p>
        </div>
        <div class="field">
          <label for="favicon-file">{t("branding.favicon")}</label>
          <input id="favicon-file" type="file" accept="image/png,image/x-icon,image/vnd.microsoft.icon,image/svg+xml" onChange={upload("favicon")} aria-describedby="favicon-hint" />
          <p class="hint" id="favicon-hint">{t("branding.favicon_hint")}</p>
        </div>
      </div>
      <FormError message={error} />
      {done && <p class="notice" role="status">{done}</p>}
    </section>
  );
}

function Hostnames({ tenantId }: { tenantId: string }) {
  const hostnames = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/hostnames", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const form = useForm({ hostname: "" }, { hostname: domainName });
  const [message, setMessage] = useState<string | null>(null);
  const add = form.submit(
    async (v) => {
      await call(api.POST("/v1/tenants/{tenant_id}/hostnames", { params: { path: { tenant_id: tenantId } }, body: { hostname: v.hostname.trim().toLowerCase() } }));
      form.setValues({ hostname: "" });
      hostnames.reload();
    },
    { hostname: ["hostname"] },
  );
  const verify = async (id: string) => {
    setMessage(null);
    try {
      await call(api.POST("/v1/hostnames/{hostname_id}/verify", { params: { path: { hostname_id: id } } }));
      hostnames.reload();
    } catch (e) {
      setMessage((e as { detail: string }).detail);
    }
  };
  const remove = async (id: string) => {
    await call(api.DELETE("/v1/hostnames/{hostname_id}", { params: { path: { hostname_id: id } } })).catch((e) => setMessage(e.detail));
    hostnames.reload();
  };
  const list = (hostnames.data ?? []) as Schemas["HostnameView"][];
  return (
    <section class="card" aria-labelledby="hostnames-title">
      <h2 id="hostnames-title">{t("branding.hostnames")}</h2>
      <p class="hint">{t("branding.hostnames_hint")}</p>
      <form class="inline-form" noValidate onSubmit={add}>
        <Field {...form.field("hostname")} label={t("branding.hostname")} placeholder="mail.example.com" autoComplete="off" />
        <Submit busy={form.busy} label={t("branding.add_hostname")} />
        <FormError message={form.formError} />
      </form>
      {message && <p class="form-error" role="alert">{message}</p>}
      {hostnames.error && <ErrorBox problem={hostnames.error} retry={hostnames.reload} />}
      <ul class="records">
        {list.map((h) => (
          <li key={h.id} class="record">
            <div class="record-head">
              <strong>{h.hostname}</strong>
              <Badge status={h.verified ? "verified" : "pending"} label={h.verified ? t("domains.verified") : t("domains.unverified")} />
              {!h.verified && <button type="button" class="primary" onClick={() => verify(h.id)}>{t("domains.verify")}</button>}
              <button type="button" class="danger" onClick={() => remove(h.id)} aria-label={t("branding.remove_hostname", { hostname: h.hostname })}>{t("common.remove")}</button>
            </div>
            {!h.verified && (
              <dl>
                <dt>{t("domains.type")}</dt>
                <dd><code>{h.verification_record.type}</code></dd>
                <dt>{t("domains.name")}</dt>
                <dd class="copyable"><code>{h.verification_record.name}</code><CopyButton text={h.verification_record.name} label={`${h.hostname} ${t("domains.name")}`} /></dd>
                <dt>{t("domains.value")}</dt>
                <dd class="copyable"><code class="value">{h.verification_record.value}</code><CopyButton text={h.verification_record.value} label={`${h.hostname} ${t("domains.value")}`} /></dd>
              </dl>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
