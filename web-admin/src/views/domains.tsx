// Domains and the DNS records to publish for each, with a copy button per
// value and the live status of every record: verified, missing, or wrong
// (with what DNS returned); how each routes what is not an account:
// delivered as another domain (a domain alias), or to a catch-all; and the
// MTA-STS mode of the policy we publish for it; and, once it is verified, the
// TLS reports other mail servers sent about delivering to it (RFC 8460).
import { useEffect, useState } from "preact/hooks";
import { type Schemas, api, call } from "../api";
import { type Key, formatDate, formatNumber, t } from "../i18n";
import { Badge, type Column, CopyButton, ErrorBox, Field, FormError, Loading, Select, Submit, Table, statusLabel, useForm, useLoad } from "../ui";
import { domainName, emailAddress } from "../validate";

type Domain = Schemas["DomainView"];

export function Domains({ tenantId }: { tenantId: string }) {
  const domains = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/domains", { params: { path: { tenant_id: tenantId }, query: { limit: 200 } } })),
    [tenantId],
  );
  const form = useForm({ name: "" }, { name: domainName });
  const add = form.submit(
    async (v) => {
      await call(api.POST("/v1/tenants/{tenant_id}/domains", { params: { path: { tenant_id: tenantId } }, body: { name: v.name.trim().toLowerCase() } }));
      form.setValues({ name: "" });
      domains.reload();
    },
    { name: ["domain"] },
  );
  const items = domains.data?.items as Domain[] | undefined;
  return (
    <>
      <form class="card inline-form" noValidate onSubmit={add}>
        <Field {...form.field("name")} label={t("domains.add_label")} placeholder="example.com" autoComplete="off" />
        <Submit busy={form.busy} label={t("domains.add")} />
        <FormError message={form.formError} />
      </form>
      {domains.error && <ErrorBox problem={domains.error} retry={domains.reload} />}
      {!items && !domains.error && <div class="card bone-block" aria-busy="true" />}
      {items && items.length === 0 && <p class="empty card">{t("domains.empty")}</p>}
      {items?.map((d, i) => <DomainCard key={d.id} domain={d} others={items.filter((o) => o.id !== d.id)} open={i === 0} onChange={domains.reload} />)}
    </>
  );
}

function DomainCard({ domain, others, open, onChange }: { domain: Domain; others: Domain[]; open: boolean; onChange: () => void }) {
  const [expanded, setExpanded] = useState(open);
  const [verifying, setVerifying] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const records = useLoad(
    () => (expanded ? call(api.GET("/v1/domains/{domain_id}/dns-records", { params: { path: { domain_id: domain.id } } })) : Promise.resolve(undefined)),
    [domain.id, expanded],
  );
  const verify = async () => {
    setVerifying(true);
    setMessage(null);
    try {
      await call(api.POST("/v1/domains/{domain_id}/verify", { params: { path: { domain_id: domain.id } }, body: { force: false } }));
      setMessage(t("domains.verified_now"));
      onChange();
    } catch (e) {
      setMessage((e as { detail: string }).detail);
    } finally {
      setVerifying(false);
      records.reload();
    }
  };
  const panel = `records-${domain.id}`;
  return (
    <article class="card domain" aria-labelledby={`domain-${domain.id}`}>
      <header class="domain-head">
        <h2 id={`domain-${domain.id}`}>{domain.name}</h2>
        <Badge status={domain.verified ? "verified" : "pending"} label={domain.verified ? t("domains.verified") : t("domains.unverified")} />
        <span class="small">{domain.verified ? t("domains.verified_at", { date: formatDate(domain.verified_at) }) : ""}</span>
        <div class="actions">
          {!domain.verified && (
            <button type="button" class="primary" onClick={verify} disabled={verifying}>
              {verifying ? t("common.working") : t("domains.verify")}
            </button>
          )}
          <button type="button" aria-expanded={expanded ? "true" : "false"} aria-controls={panel} onClick={() => setExpanded(!expanded)}>
            {expanded ? t("domains.hide_records") : t("domains.show_records")}
          </button>
          <button type="button" onClick={() => records.reload()} disabled={!expanded}>{t("domains.recheck")}</button>
        </div>
      </header>
      {message && <p class="notice" role="status">{message}</p>}
      <div id={panel} hidden={!expanded}>
        {records.error && <ErrorBox problem={records.error} retry={records.reload} />}
        {expanded && <Records data={records.data} loading={records.loading} />}
      </div>
      <Routing domain={domain} others={others} />
      <MtaSts domain={domain} onSaved={records.reload} />
      {domain.verified && <TlsReports domain={domain} />}
    </article>
  );
}

/** Where mail for the domain goes when it is not an account's: another domain, a catch-all, or nowhere (refused). */
function Routing({ domain, others }: { domain: Domain; others: Domain[] }) {
  const routing = useLoad(() => call(api.GET("/v1/domains/{domain_id}/routing", { params: { path: { domain_id: domain.id } } })), [domain.id]);
  // Field ids are the page's: one pair per domain.
  const aliasOf = `alias_of_${domain.id}`;
  const catchAll = `catch_all_${domain.id}`;
  const form = useForm<string>({ [aliasOf]: "", [catchAll]: "" }, { [catchAll]: (v) => (v.trim() === "" ? null : emailAddress(v.trim())) });
  const field = (key: string) => ({ ...form.field(key), value: form.values[key] ?? "" });
  const [saved, setSaved] = useState(false);
  const show = (r: Schemas["DomainRouting"]) => form.setValues({ [aliasOf]: r.alias_of ?? "", [catchAll]: r.catch_all ?? "" });
  useEffect(() => {
    if (routing.data) show(routing.data);
  }, [routing.data]);

  const save = form.submit(
    async (v) => {
      setSaved(false);
      const kept = await call(
        api.PUT("/v1/domains/{domain_id}/routing", {
          params: { path: { domain_id: domain.id } },
          body: { alias_of: v[aliasOf] || null, catch_all: v[catchAll]!.trim().toLowerCase() || null },
        }),
      );
      show(kept);
      setSaved(true);
    },
    { [aliasOf]: ["alias_of", "alias"], [catchAll]: ["catch_all", "catch-all"] },
  );

  const titleId = `routing-${domain.id}`;
  return (
    <div class="routing">
      <h3 id={titleId}>{t("routing.title")}</h3>
      {routing.error ? (
        <ErrorBox problem={routing.error} retry={routing.reload} />
      ) : !routing.data ? (
        <Loading />
      ) : (
        <form class="inline-form" noValidate onSubmit={save} aria-labelledby={`${titleId} domain-${domain.id}`}>
          <Select
            {...field(aliasOf)}
            label={t("routing.alias_of")}
            hint={t("routing.alias_of_hint", { name: domain.name })}
            options={[
              { value: "", label: t("routing.none") },
              ...others.map((d) => ({ value: d.id, label: d.verified ? d.name : t("routing.unverified", { name: d.name }) })),
            ]}
          />
          <Field
            {...field(catchAll)}
            label={t("routing.catch_all")}
            hint={t("routing.catch_all_hint")}
            type="email"
            autoComplete="off"
            placeholder={`postmaster@${domain.name}`}
          />
          <Submit busy={form.busy} label={t("routing.save")} />
          <FormError message={form.formError} />
          <p class="small" role="status">{saved ? t("routing.saved") : ""}</p>
        </form>
      )}
    </div>
  );
}

type MtaStsMode = Schemas["MtaStsMode"];
const MTA_STS_MODES: MtaStsMode[] = ["testing", "enforce", "none"];

/**
 * The MTA-STS mode of the domain's policy. The `_mta-sts` record's id is a
 * digest of the policy, so a new mode means a new value to publish:
 * `onSaved` refreshes the DNS records that show it.
 */
function MtaSts({ domain, onSaved }: { domain: Domain; onSaved: () => void }) {
  const loaded = useLoad(() => call(api.GET("/v1/domains/{domain_id}/mta-sts", { params: { path: { domain_id: domain.id } } })), [domain.id]);
  const [published, setPublished] = useState<Schemas["MtaStsView"] | null>(null);
  const [mode, setMode] = useState<MtaStsMode | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const view = published ?? loaded.data;
  useEffect(() => {
    if (loaded.data) setMode(loaded.data.mode);
  }, [loaded.data]);

  const save = async (event: Event) => {
    event.preventDefault();
    if (!mode) return;
    setBusy(true);
    setSaved(false);
    setError(null);
    try {
      const now = await call(api.PUT("/v1/domains/{domain_id}/mta-sts", { params: { path: { domain_id: domain.id } }, body: { mode } }));
      setPublished(now);
      setMode(now.mode);
      setSaved(true);
      onSaved();
    } catch (e) {
      setError((e as { detail: string }).detail);
    } finally {
      setBusy(false);
    }
  };

  const titleId = `mta-sts-${domain.id}`;
  return (
    <div class="mta-sts">
      <h3 id={titleId}>{t("mta_sts.title")}</h3>
      {loaded.error ? (
        <ErrorBox problem={loaded.error} retry={loaded.reload} />
      ) : !view ? (
        <Loading />
      ) : (
        <form noValidate onSubmit={save} aria-labelledby={`${titleId} domain-${domain.id}`}>
          <p class="hint">{t("mta_sts.lead")}</p>
          <p>{t("mta_sts.now", { mode: t(`mta_sts.mode.${view.mode}` as Key) })}</p>
          <fieldset>
            <legend>{t("mta_sts.choose")}</legend>
            {MTA_STS_MODES.map((m) => (
              <label class="choice" key={m}>
                <input
                  type="radio"
                  name={`mta_sts_mode_${domain.id}`}
                  value={m}
                  checked={mode === m}
                  onChange={() => {
                    setMode(m);
                    setSaved(false);
                  }}
                />
                <span>
                  <strong>{t(`mta_sts.mode.${m}` as Key)}</strong>
                  <span class="small block">{t(`mta_sts.mode.${m}.what` as Key)}</span>
                </span>
              </label>
            ))}
          </fieldset>
          <FormError message={error} />
          <Submit busy={busy} label={t("mta_sts.save")} />
          <p class="small" role="status">{saved ? t("mta_sts.saved") : ""}</p>
          <p class="small">{t("mta_sts.policy", { url: view.url })}</p>
          <pre class="script">{view.policy}</pre>
          <p class="small">
            {t("mta_sts.id")} <code>{view.id}</code>
          </p>
          <p class="hint">{t("mta_sts.id_hint")}</p>
        </form>
      )}
    </div>
  );
}

type TlsReport = Schemas["TlsReport"];

/** One `failure-details` entry of a report (RFC 8460), in plain words: what failed, from which sender, how often. */
function failureText(detail: Record<string, unknown>): string {
  const result = typeof detail["result-type"] === "string" ? statusLabel(detail["result-type"], "tls_reports.result") : t("tls_reports.result.unknown");
  const count = typeof detail["failed-session-count"] === "number" ? detail["failed-session-count"] : 0;
  const ip = typeof detail["sending-mta-ip"] === "string" ? detail["sending-mta-ip"] : null;
  const sessions = t(count === 1 ? "tls_reports.sessions_one" : "tls_reports.sessions", { count: formatNumber(count) });
  return ip ? t("tls_reports.failure_from", { result, sessions, ip }) : t("tls_reports.failure", { result, sessions });
}

function period(r: TlsReport): string {
  const start = formatDate(r.starts_at);
  const end = formatDate(r.ends_at);
  return start === end ? start : `${start} – ${end}`;
}

/** What other mail servers reported about delivering to the domain over TLS, newest first. */
function TlsReports({ domain }: { domain: Domain }) {
  const reports = useLoad(() => call(api.GET("/v1/domains/{domain_id}/tls-reports", { params: { path: { domain_id: domain.id } } })), [domain.id]);
  const titleId = `tls-reports-${domain.id}`;
  const columns: Column<TlsReport>[] = [
    { label: t("tls_reports.organization"), cell: (r) => r.organization },
    { label: t("tls_reports.period"), cell: period },
    { label: t("tls_reports.policy"), cell: (r) => statusLabel(r.policy_type, "tls_reports.policy") },
    { label: t("tls_reports.successes"), class: "num", cell: (r) => formatNumber(r.successes) },
    {
      label: t("tls_reports.failures"),
      class: "num",
      cell: (r) => (r.failures > 0 ? <span class="badge warn">{formatNumber(r.failures)}</span> : formatNumber(r.failures)),
    },
    {
      label: t("tls_reports.details"),
      cell: (r) =>
        r.failure_details.length === 0 ? (
          "—"
        ) : (
          <ul class="plain">
            {r.failure_details.map((d, i) => <li key={i}>{failureText(d as Record<string, unknown>)}</li>)}
          </ul>
        ),
    },
  ];
  return (
    <div class="tls-reports">
      <h3 id={titleId}>{t("tls_reports.title")}</h3>
      <p class="hint">{t("tls_reports.lead")}</p>
      {reports.error ? (
        <ErrorBox problem={reports.error} retry={reports.reload} />
      ) : reports.data && reports.data.length === 0 ? (
        <p class="empty">{t("tls_reports.empty")}</p>
      ) : (
        <Table
          caption={t("tls_reports.caption", { name: domain.name })}
          columns={columns}
          rows={reports.data}
          loading={reports.loading}
          empty={t("tls_reports.empty")}
          rowKey={(r) => `${r.organization}-${r.report_id}`}
        />
      )}
    </div>
  );
}

function Records({ data, loading }: { data: Schemas["DnsRecords"] | undefined; loading: boolean }) {
  if (!data) return <div class="bone-block" aria-busy={loading ? "true" : undefined} />;
  return (
    <>
      <p class="small">{data.ready ? t("domains.ready") : t("domains.not_ready")}</p>
      <ul class="records">
        {data.records.map((r) => (
          <li key={`${r.purpose}-${r.name}-${r.value}`} class={`record ${r.status}${r.required ? "" : " optional"}`}>
            <div class="record-head">
              <strong>{t(`purpose.${r.purpose}` as Key)}</strong>
              <Badge status={r.status} />
              {!r.required && <span class="small">{t("domains.optional")}</span>}
            </div>
            <dl>
              <dt>{t("domains.type")}</dt>
              <dd><code>{r.type}</code></dd>
              <dt>{t("domains.name")}</dt>
              <dd class="copyable">
                <code>{r.name}</code>
                <CopyButton text={r.name} label={`${t(`purpose.${r.purpose}` as Key)} ${t("domains.name")}`} />
              </dd>
              <dt>{t("domains.value")}</dt>
              <dd class="copyable">
                <code class="value">{r.value}</code>
                <CopyButton text={r.value} label={`${t(`purpose.${r.purpose}` as Key)} ${t("domains.value")}`} />
              </dd>
              {r.status === "wrong" && (
                <>
                  <dt>{t("domains.found")}</dt>
                  <dd>{r.found.length ? r.found.map((f) => <code class="value found" key={f}>{f}</code>) : "—"}</dd>
                </>
              )}
            </dl>
          </li>
        ))}
      </ul>
    </>
  );
}
