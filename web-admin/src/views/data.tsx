// Data and transparency: take the whole tenant away (an encrypted archive
// behind a download link shown once and kept only in this page's memory),
// follow its exports, and read what courts and authorities asked about it,
// with the switch that publishes that report on the tenant's own hostnames;
// and the switches for its accounts' outgoing mail: scanned for spam, and
// whether it may be forwarded outside the service.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Schemas, type Session, api, call } from "../api";
import { Refused, currentPasswordProof } from "../device";
import { type Key, currentLanguage, formatBytes, formatDate, formatNumber, t } from "../i18n";
import { Badge, type Column, CopyButton, ErrorBox, FormError, Field, Submit, Table, TextArea, statusLabel, useForm, useLoad } from "../ui";

type TenantExport = Schemas["TenantExport"];
type Method = "passphrase" | "openpgp";

/** While an export is in one of these states, the list asks again this often. */
const POLL_MS = 3000;
const IN_PROGRESS: Schemas["ExportState"][] = ["queued", "running"];

/** A download link, only as long as this page lives: never stored, never fetched again. */
interface OneTimeLink {
  exportId: string;
  url: string;
  expiresAt: string;
}

export function DataAndTransparency({ session, tenantId, tenant, reload }: { session: Session; tenantId: string; tenant: Schemas["Tenant"] | undefined; reload: () => void }) {
  const exports = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/exports", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const [link, setLink] = useState<OneTimeLink | null>(null);
  const items = exports.data?.items;
  const working = items?.some((x) => IN_PROGRESS.includes(x.state)) ?? false;

  useEffect(() => {
    if (!working) return;
    const timer = setTimeout(exports.reload, POLL_MS);
    return () => clearTimeout(timer);
  }, [exports.data, working]);

  return (
    <>
      <ExportForm
        username={session.username}
        tenantId={tenantId}
        name={tenant?.name}
        onCreated={(created) => {
          setLink({ exportId: created.export.id, url: new URL(created.download_url, location.origin).href, expiresAt: created.export.expires_at });
          exports.reload();
        }}
      />
      {link && (
        <DownloadLink
          link={link}
          current={items?.find((x) => x.id === link.exportId)}
          onUsed={() => setTimeout(exports.reload, 1000)}
          onDismiss={() => setLink(null)}
        />
      )}
      {/* Not a landmark of its own: the table inside already is one, with the same name. */}
      <section class="card">
        <div class="section-head">
          <h2>{t("export.list")}</h2>
          <button type="button" onClick={exports.reload}>{t("common.refresh")}</button>
        </div>
        <p class="small" aria-live="polite">{working ? t("export.list_refreshing") : t("export.list_hint")}</p>
        {exports.error ? <ErrorBox problem={exports.error} retry={exports.reload} /> : <ExportTable rows={items} loading={exports.loading} session={session} />}
      </section>
      <Transparency tenantId={tenantId} tenant={tenant} reload={reload} />
      {tenant && <OutgoingMail tenant={tenant} reload={reload} />}
    </>
  );
}

function ExportForm({ tenantId, username, name, onCreated }: { tenantId: string; username: string; name: string | undefined; onCreated: (created: Schemas["ExportCreated"]) => void }) {
  const [method, setMethod] = useState<Method>("passphrase");
  // One form per way of locking the archive: a problem the API has with one
  // lands next to its own fields, never next to hidden ones.
  const byPassphrase = useForm({ passphrase: "", passphrase_again: "", password: "" });
  const byKey = useForm({ openpgp_public_key: "", password: "" });
  const form = method === "passphrase" ? byPassphrase : byKey;
  // The password is given again without leaving the browser: a device
  // sign-in, finished by the export request itself.
  const create = async (body: Omit<Schemas["ExportRequest"], "password">, password: string) => {
    let proof;
    try {
      proof = await currentPasswordProof(username, password);
    } catch (e) {
      if (e instanceof Refused) throw { status: e.status, detail: e.problem.detail ?? e.message, found: ["password"] };
      throw e;
    }
    return call(api.POST("/v1/tenants/{tenant_id}/export", { params: { path: { tenant_id: tenantId } }, body: { ...body, current_password_proof: proof } }));
  };
  const submit =
    method === "passphrase"
      ? byPassphrase.submit(async (v) => {
          if (v.passphrase !== v.passphrase_again) throw { status: 0, detail: t("export.passphrase_mismatch"), field: "passphrase_again" };
          const created = await create({ passphrase: v.passphrase }, v.password);
          byPassphrase.setValues({ passphrase: "", passphrase_again: "", password: "" });
          onCreated(created);
        })
      : byKey.submit(
          async (v) => {
            const created = await create({ openpgp_public_key: v.openpgp_public_key.trim() }, v.password);
            byKey.setValues({ openpgp_public_key: "", password: "" });
            onCreated(created);
          },
          // Whatever the API says about the recipient is about the key here.
          { openpgp_public_key: ["passphrase", "OpenPGP"] },
        );
  return (
    <form class="card form-grid" noValidate onSubmit={submit} aria-labelledby="export-title">
      <h2 id="export-title">{t("export.title")}</h2>
      <p class="lead">{name ? t("export.lead", { name }) : t("export.lead_unnamed")}</p>
      <ul class="holds">
        {(["branding", "domains", "accounts", "mail", "folders", "audit", "billing"] as const).map((what) => (
          <li key={what}>{t(`export.holds.${what}` as Key)}</li>
        ))}
      </ul>
      <p class="lead">{t("export.move")}</p>
      <p class="warning">{t("export.sensitive")}</p>
      <fieldset>
        <legend>{t("export.lock_with")}</legend>
        {(["passphrase", "openpgp"] as const).map((m) => (
          <label class="choice" key={m}>
            <input type="radio" name="export_method" value={m} checked={method === m} onChange={() => setMethod(m)} />
            <span>
              <strong>{t(`export.method.${m}` as Key)}</strong>
              <span class="small block">{t(`export.method.${m}.what` as Key)}</span>
            </span>
          </label>
        ))}
      </fieldset>
      {method === "passphrase" ? (
        <div class="row">
          <Field {...byPassphrase.field("passphrase")} type="password" label={t("export.passphrase")} hint={t("export.passphrase_hint")} autoComplete="new-password" />
          <Field {...byPassphrase.field("passphrase_again")} type="password" label={t("export.passphrase_again")} autoComplete="new-password" />
        </div>
      ) : (
        <TextArea {...byKey.field("openpgp_public_key")} label={t("export.openpgp_key")} hint={t("export.openpgp_hint")} rows={8} placeholder="-----BEGIN PGP PUBLIC KEY BLOCK-----" />
      )}
      <Field {...form.field("password")} type="password" label={t("export.your_password")} hint={t("export.your_password_hint")} autoComplete="current-password" />
      <FormError message={form.formError} />
      <Submit busy={form.busy} label={t("export.submit")} />
    </form>
  );
}

function DownloadLink({ link, current, onUsed, onDismiss }: { link: OneTimeLink; current: TenantExport | undefined; onUsed: () => void; onDismiss: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const [used, setUsed] = useState(false);
  useEffect(() => heading.current?.focus(), [link.exportId]);
  const state = current?.state ?? "queued";
  return (
    <section class="card one-time" aria-labelledby="link-title">
      <h2 id="link-title" tabIndex={-1} ref={heading}>{t("export.link_title")}</h2>
      <p class="warning">{t("export.link_once", { date: formatDate(link.expiresAt, true) })}</p>
      <p class="copyable secret">
        <code data-testid="export-link">{link.url}</code>
        <CopyButton text={link.url} label={t("export.link")} />
      </p>
      <p role="status" class="link-state">
        <Badge status={state} label={statusLabel(state, "exportstate")} /> {t(`export.link_state.${state}` as Key)}
      </p>
      <div class="buttons">
        {state === "ready" && !used && (
          <a
            class="button primary"
            href={link.url}
            download
            onClick={() => {
              setUsed(true);
              onUsed();
            }}
          >
            {t("export.download")}
          </a>
        )}
        <button type="button" onClick={onDismiss}>{t("export.link_done")}</button>
      </div>
    </section>
  );
}

function ExportTable({ rows, loading, session }: { rows: TenantExport[] | undefined; loading: boolean; session: Session }) {
  // The API names who asked as the audit log does; the signed-in admin is named by address.
  const who = (actor: string) => (session.accountId && actor === `account:${session.accountId}` ? session.username : actor);
  const columns: Column<TenantExport>[] = [
    { label: t("export.asked"), cell: (x) => <time dateTime={x.created_at}>{formatDate(x.created_at, true)}</time> },
    { label: t("export.by"), cell: (x) => <span class="small">{who(x.requested_by)}</span> },
    { label: t("export.locked"), cell: (x) => t(`export.recipient.${x.recipient}` as Key) },
    {
      label: t("export.state"),
      cell: (x) => (
        <span>
          <Badge status={x.state} label={statusLabel(x.state, "exportstate")} />
          {x.state === "failed" && x.error && <span class="small block">{x.error}</span>}
          {x.state === "downloaded" && x.downloaded_at && <span class="small block">{formatDate(x.downloaded_at, true)}</span>}
        </span>
      ),
    },
    { label: t("export.size"), cell: (x) => (x.bytes == null ? "—" : formatBytes(x.bytes)), class: "num nowrap" },
    { label: t("export.messages"), cell: (x) => (x.messages == null ? "—" : formatNumber(x.messages)), class: "num" },
    { label: t("export.until"), cell: (x) => <time dateTime={x.expires_at}>{formatDate(x.expires_at, true)}</time> },
  ];
  return <Table caption={t("export.list")} columns={columns} rows={rows} loading={loading} empty={t("export.empty")} rowKey={(x) => x.id} skeletonRows={2} />;
}

type Counts = Schemas["TransparencyCounts"];

const NUMBERS: { key: Key; value: (c: Counts) => number }[] = [
  { key: "transparency.received", value: (c) => c.received },
  { key: "transparency.refused_no_legal_basis", value: (c) => c.refused_no_legal_basis },
  { key: "transparency.refused", value: (c) => c.refused },
  { key: "transparency.contested", value: (c) => c.contested },
  { key: "transparency.complied", value: (c) => c.complied },
  { key: "transparency.partially", value: (c) => c.partially },
  { key: "transparency.disclosed", value: (c) => c.messages_disclosed.standard + c.messages_disclosed.sealed + c.messages_disclosed.dispersed + c.messages_disclosed.end_to_end },
  { key: "transparency.ciphertext_only", value: (c) => c.messages_ciphertext_only },
];

function quarter(q: string): string {
  const m = /^(\d{4})-Q([1-4])$/.exec(q);
  return m ? t("transparency.quarter", { year: m[1]!, q: m[2]! }) : q;
}

function country(code: string): string {
  try {
    const name = new Intl.DisplayNames([currentLanguage()], { type: "region" }).of(code);
    return name && name !== code ? `${name} (${code})` : code;
  } catch {
    return code;
  }
}

function Transparency({ tenantId, tenant, reload }: { tenantId: string; tenant: Schemas["Tenant"] | undefined; reload: () => void }) {
  const report = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/transparency", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const rows = report.data?.rows;
  const totals = report.data?.totals;
  const caption = t("transparency.caption");
  return (
    <section class="card transparency" aria-labelledby="transparency-title">
      <h2 id="transparency-title">{t("transparency.title")}</h2>
      <p class="lead">{t("transparency.lead")}</p>
      <p class="small">{t("transparency.gag")}</p>
      {report.error && <ErrorBox problem={report.error} retry={report.reload} />}
      {!report.data && !report.error && <div class="bone-block" aria-busy="true" />}
      {rows && rows.length === 0 && <p class="empty" data-testid="transparency-empty">{t("transparency.empty")}</p>}
      {rows && rows.length > 0 && totals && (
        <div class="table-wrap" tabIndex={0} role="region" aria-label={caption}>
          <table>
            <caption class="visually-hidden">{caption}</caption>
            <thead>
              <tr>
                <th scope="col">{t("transparency.quarter_col")}</th>
                <th scope="col">{t("transparency.country")}</th>
                {NUMBERS.map((n) => (
                  <th scope="col" class="num" key={n.key}>{t(n.key)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={`${r.quarter}-${r.country}`}>
                  <th scope="row" data-label={t("transparency.quarter_col")}>{quarter(r.quarter)}</th>
                  <td data-label={t("transparency.country")}>{country(r.country)}</td>
                  {NUMBERS.map((n) => (
                    <td class="num" data-label={t(n.key)} key={n.key}>{formatNumber(n.value(r))}</td>
                  ))}
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <th scope="row" colSpan={2}>{t("transparency.total")}</th>
                {NUMBERS.map((n) => (
                  <td class="num" data-label={t(n.key)} key={n.key}>{formatNumber(n.value(totals))}</td>
                ))}
              </tr>
            </tfoot>
          </table>
        </div>
      )}
      {tenant && <PublishSwitch tenant={tenant} reload={reload} />}
    </section>
  );
}

/** Tenant settings that are one switch each, changed with `PATCH /v1/tenants/{tenant_id}`. */
type SwitchField = "publish_transparency" | "scan_outbound" | "external_forwarding";

function PublishSwitch({ tenant, reload }: { tenant: Schemas["Tenant"]; reload: () => void }) {
  return <TenantSwitch tenant={tenant} reload={reload} field="publish_transparency" id="publish" class="publish" label="transparency.publish" hint="transparency.publish_hint" on="transparency.published" off="transparency.unpublished" />;
}

/**
 * Whether the tenant's accounts' submissions are scanned for spam (always for
 * the public tenant), and whether its accounts may forward their mail
 * outside the service (at `sealed` and above, only encrypted to the
 * destination's key).
 */
function OutgoingMail({ tenant, reload }: { tenant: Schemas["Tenant"]; reload: () => void }) {
  const always = tenant.kind === "public";
  return (
    <section class="card" aria-labelledby="scan-title">
      <h2 id="scan-title">{t("scan.title")}</h2>
      <TenantSwitch
        tenant={tenant}
        reload={reload}
        field="scan_outbound"
        id="scan"
        class="setting"
        label="scan.outbound"
        hint={always ? "scan.outbound_always" : "scan.outbound_hint"}
        on="scan.on"
        off="scan.off"
        locked={always}
      />
      <TenantSwitch
        tenant={tenant}
        reload={reload}
        field="external_forwarding"
        id="forwarding"
        class="setting"
        label="forwarding.external"
        hint="forwarding.external_hint"
        on="forwarding.on"
        off="forwarding.off"
      />
    </section>
  );
}

function TenantSwitch(p: { tenant: Schemas["Tenant"]; reload: () => void; field: SwitchField; id: string; class: string; label: Key; hint: Key; on: Key; off: Key; locked?: boolean }) {
  const { tenant, field } = p;
  const [checked, setChecked] = useState(tenant[field]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => setChecked(tenant[field]), [tenant[field]]);

  const toggle = async (next: boolean) => {
    setChecked(next);
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      const updated = await call(api.PATCH("/v1/tenants/{tenant_id}", { params: { path: { tenant_id: tenant.id } }, body: { [field]: next } }));
      setChecked(updated[field]);
      setSaved(true);
      p.reload();
    } catch (e) {
      setChecked(!next);
      setError((e as { detail: string }).detail);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class={p.class}>
      <label class="choice">
        <input
          type="checkbox"
          role="switch"
          class={p.locked ? "locked" : undefined}
          checked={p.locked || checked}
          disabled={busy || p.locked}
          aria-describedby={`${p.id}-hint`}
          onChange={(e) => toggle(e.currentTarget.checked)}
        />
        <span>
          <strong>{t(p.label)}</strong>
          <span class="small block" id={`${p.id}-hint`}>{t(p.hint)}</span>
        </span>
      </label>
      <FormError message={error} />
      <p class="small" role="status">{saved ? (checked ? t(p.on) : t(p.off)) : ""}</p>
    </div>
  );
}
