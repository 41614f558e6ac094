// Operator views: the funding pool, the storage sites, the TLS certificates,
// the job queue and the accounts the outbound spam filter refused.
import { useState } from "preact/hooks";
import { type Problem, api, call } from "../api";
import { Chart } from "../charts";
import { formatBytes, formatDate, formatDays, formatNumber, t } from "../i18n";
import { Badge, type Column, Dialog, ErrorBox, type Loaded, PageHeader, Table, statusLabel, useLoad } from "../ui";
import type { Schemas } from "../api";

export function PoolChart() {
  const history = useLoad(() => call(api.GET("/v1/pool/history", { params: { query: { months: 12 } } })), []);
  const months = history.data?.months ?? [];
  return (
    <Chart
      title={t("chart.pool")}
      kind="lines"
      loading={!history.data}
      labels={months.map((m) => m.month)}
      series={[
        { name: t("chart.capacity"), values: months.map((m) => m.capacity), tone: "primary" },
        { name: t("chart.free_accounts"), values: months.map((m) => m.free_accounts), tone: "accent" },
      ]}
    />
  );
}

export function Pool() {
  const pool = useLoad(() => call(api.GET("/v1/public/pool")), []);
  const p = pool.data;
  const stat = (label: string, value: string | undefined, testid: string) => (
    <div class="card stat">
      <h2>{label}</h2>
      <p class="big" data-testid={testid}>{value ?? "\u00a0"}</p>
    </div>
  );
  return (
    <section>
      <PageHeader title={t("nav.pool")} />
      <p class="lead">{t("pool.lead")}</p>
      {pool.error && <ErrorBox problem={pool.error} retry={pool.reload} />}
      <div class="cards">
        {stat(t("pool.capacity"), p && formatNumber(p.funded_capacity), "pool-capacity")}
        {stat(t("pool.active"), p && formatNumber(p.active_free_accounts), "pool-active")}
        {stat(t("pool.waiting"), p && formatNumber(p.waiting), "pool-waiting")}
        {stat(t("pool.funded"), p && t("pool.months", { n: formatNumber(Math.floor(p.funded_account_months)) }), "pool-funded")}
      </div>
      <p class="small">{p ? t("pool.horizon", { n: p.horizon_months, tenants: p.funding_tenants }) : "\u00a0"}</p>
      {p && p.named_funders.length > 0 && <p class="small">{t("pool.named", { list: p.named_funders.join(", ") })}</p>}
      <PoolChart />
    </section>
  );
}

type Site = Schemas["SiteReport"];

export function Sites() {
  const sites = useLoad(() => call(api.GET("/v1/sites")), []);
  const s = sites.data;
  const columns: Column<Site>[] = [
    { label: t("sites.name"), cell: (x) => <span class="strong">{x.name}</span> },
    { label: t("sites.jurisdiction"), cell: (x) => x.jurisdiction },
    { label: t("sites.health"), cell: (x) => <Badge status={x.up ? "up" : "down"} label={x.up ? t("sites.up", { ms: x.latency_ms }) : t("sites.down")} /> },
    { label: t("sites.shards"), cell: (x) => formatNumber(x.shards), class: "num" },
    { label: t("sites.bytes"), cell: (x) => formatBytes(x.bytes), class: "num" },
    { label: t("sites.unhealthy"), cell: (x) => (x.unhealthy ? <Badge status="wrong" label={formatNumber(x.unhealthy)} /> : "0"), class: "num" },
    { label: t("sites.where"), cell: (x) => <span class="small">{x.backend}: {x.location}{x.error ? ` — ${x.error}` : ""}</span> },
  ];
  return (
    <section>
      <PageHeader title={t("nav.sites")}>
        <button type="button" onClick={sites.reload}>{t("common.refresh")}</button>
      </PageHeader>
      {s && <p class="lead">{t("sites.lead", { k: s.default_redundancy.k, n: s.default_redundancy.n, quorum: s.write_quorum })}</p>}
      {sites.error ? <ErrorBox problem={sites.error} retry={sites.reload} /> : <Table caption={t("nav.sites")} columns={columns} rows={s?.sites} loading={sites.loading} empty={t("sites.empty")} rowKey={(x) => x.name} />}
      <h2>{t("sites.redundancy")}</h2>
      <p class="hint">{t("sites.redundancy_hint")}</p>
      <Table
        caption={t("sites.redundancy")}
        columns={[
          { label: t("sites.scheme"), cell: (r: Schemas["RedundancyCount"]) => `${r.k}-of-${r.n}` },
          { label: t("sites.good"), cell: (r) => `${r.good} / ${r.n}` },
          { label: t("sites.margin"), cell: (r) => <Badge status={r.good - r.k <= 0 ? "wrong" : r.good < r.n ? "pending" : "verified"} label={t("sites.margin_value", { n: r.good - r.k })} /> },
          { label: t("sites.objects"), cell: (r) => formatNumber(r.objects), class: "num" },
        ]}
        rows={s?.redundancy}
        loading={sites.loading}
        empty={t("sites.no_objects")}
        rowKey={(r) => `${r.k}-${r.n}-${r.good}`}
        skeletonRows={2}
      />
    </section>
  );
}

type Certificate = Schemas["CertificateView"];

// Renewal starts 30 days before expiry: a certificate this close to it has
// failed to renew for two weeks, and needs the operator's eyes.
const EXPIRY_WARNING_DAYS = 14;

/** Whole days from now until `iso`; negative once it has passed. */
function daysUntil(iso: string): number {
  return Math.floor((Date.parse(iso) - Date.now()) / 86_400_000);
}

export function Certificates() {
  const certificates = useLoad(() => call(api.GET("/v1/certificates")), []);
  const [renewing, setRenewing] = useState<string | null>(null);
  // The name, not the sentence: the confirmation follows a change of language.
  const [renewed, setRenewed] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const renew = async (c: Certificate) => {
    setRenewing(c.name);
    setRenewed(null);
    setError(null);
    try {
      await call(api.POST("/v1/certificates/{certificate_name}/renew", { params: { path: { certificate_name: c.name } } }));
      setRenewed(c.name);
      certificates.reload();
    } catch (e) {
      setError((e as Problem).detail);
    } finally {
      setRenewing(null);
    }
  };
  const columns: Column<Certificate>[] = [
    {
      label: t("certificates.names"),
      cell: (c) => (
        <span>
          {c.names.map((n, i) => (
            <span class={i === 0 ? "strong block" : "small block"} key={n}>{n}</span>
          ))}
        </span>
      ),
    },
    {
      label: t("certificates.issuer"),
      cell: (c) => (
        <span>
          {c.issuer ?? "—"}
          {c.serial && <span class="small mono block">{c.serial}</span>}
        </span>
      ),
    },
    {
      label: t("certificates.expires"),
      cell: (c) => {
        if (!c.not_after) return "—";
        const days = daysUntil(c.not_after);
        return (
          <span>
            <time dateTime={c.not_after}>{formatDate(c.not_after)}</time>
            <span class="block">
              {days < 0 ? (
                <Badge status="wrong" label={t("certificates.expired", { when: formatDays(days) })} />
              ) : days <= EXPIRY_WARNING_DAYS ? (
                <Badge status="pending" label={formatDays(days)} />
              ) : (
                <span class="small">{formatDays(days)}</span>
              )}
            </span>
          </span>
        );
      },
    },
    {
      label: t("certificates.status"),
      cell: (c) =>
        c.last_error ? (
          <span>
            <Badge status="failed" label={t("certificates.failed", { n: formatNumber(c.attempts) })} />
            <span class="small mono block">{c.last_error}</span>
          </span>
        ) : c.not_after ? (
          <Badge status="verified" label={t("certificates.issued")} />
        ) : (
          <Badge status="pending" label={t("certificates.pending")} />
        ),
    },
    { label: t("certificates.next_attempt"), cell: (c) => <time dateTime={c.next_attempt_at}>{formatDate(c.next_attempt_at, true)}</time> },
    {
      label: t("common.actions"),
      cell: (c) => (
        <button type="button" onClick={() => renew(c)} disabled={renewing !== null} aria-label={t("certificates.renew_which", { name: c.name })}>
          {renewing === c.name ? t("common.working") : t("certificates.renew")}
        </button>
      ),
    },
  ];
  return (
    <section>
      <PageHeader title={t("nav.certificates")}>
        <button type="button" onClick={certificates.reload}>{t("common.refresh")}</button>
      </PageHeader>
      <p class="lead">{t("certificates.lead")}</p>
      {renewed && <p class="notice" role="status">{t("certificates.renew_asked", { name: renewed })}</p>}
      {error && <p class="form-error" role="alert">{error}</p>}
      {certificates.error ? (
        <ErrorBox problem={certificates.error} retry={certificates.reload} />
      ) : (
        <Table
          caption={t("nav.certificates")}
          columns={columns}
          rows={certificates.data}
          loading={certificates.loading}
          empty={t("certificates.empty")}
          rowKey={(c) => c.name}
        />
      )}
    </section>
  );
}

export function Queue() {
  const queue = useLoad(() => call(api.GET("/v1/queue")), []);
  const abuse = useLoad(() => call(api.GET("/v1/abuse")), []);
  const q = queue.data;
  const refresh = () => {
    queue.reload();
    abuse.reload();
  };
  return (
    <section>
      <PageHeader title={t("nav.queue")}>
        <button type="button" onClick={refresh}>{t("common.refresh")}</button>
      </PageHeader>
      {queue.error && <ErrorBox problem={queue.error} retry={queue.reload} />}
      <Table
        caption={t("queue.depth")}
        columns={[
          { label: t("queue.kind"), cell: (d: Schemas["QueueDepth"]) => <code>{d.kind}</code> },
          { label: t("queue.state"), cell: (d) => <Badge status={d.state} label={statusLabel(d.state, "jobstate")} /> },
          { label: t("queue.jobs"), cell: (d) => formatNumber(d.jobs), class: "num" },
        ]}
        rows={q?.depth}
        loading={queue.loading}
        empty={t("queue.idle")}
        rowKey={(d) => `${d.kind}-${d.state}`}
      />
      <h2>{t("queue.dead")}</h2>
      <Table
        caption={t("queue.dead")}
        columns={[
          { label: t("queue.kind"), cell: (j: Schemas["DeadJob"]) => <code>{j.kind}</code> },
          { label: t("queue.attempts"), cell: (j) => formatNumber(j.attempts), class: "num" },
          { label: t("queue.when"), cell: (j) => formatDate(j.updated_at, true) },
          { label: t("queue.error"), cell: (j) => <span class="small mono">{j.last_error ?? ""}</span> },
        ]}
        rows={q?.dead_letters}
        loading={queue.loading}
        empty={t("queue.no_dead")}
        rowKey={(j) => j.id}
        skeletonRows={2}
      />
      <OutboundAbuse abuse={abuse} />
    </section>
  );
}

type AbuseEntry = Schemas["AbuseEntry"];

/** Accounts the outbound filter refused lately; those without sending get it back after a confirmation. */
function OutboundAbuse({ abuse }: { abuse: Loaded<Schemas["AbuseReport"]> }) {
  const [clearing, setClearing] = useState<AbuseEntry | null>(null);
  const [error, setError] = useState<string | null>(null);
  const strikes = abuse.data?.outbound_strikes;
  const giveBack = async (entry: AbuseEntry) => {
    setError(null);
    try {
      await call(api.DELETE("/v1/abuse/{account_id}", { params: { path: { account_id: entry.account_id } } }));
    } catch (e) {
      setError((e as Problem).detail);
    }
    setClearing(null);
    abuse.reload();
  };
  const columns: Column<AbuseEntry>[] = [
    { label: t("abuse.address"), cell: (a) => <span class="strong">{a.address}</span> },
    {
      label: t("abuse.status"),
      cell: (a) =>
        a.sending_blocked_at ? (
          <Badge status="suspended" label={t("abuse.blocked_since", { date: formatDate(a.sending_blocked_at, true) })} />
        ) : (
          <Badge status="active" label={t("abuse.sending")} />
        ),
    },
    { label: t("abuse.strikes_last_day"), cell: (a) => formatNumber(a.strikes_last_day), class: "num" },
    {
      label: t("abuse.latest"),
      cell: (a) => {
        const latest = a.strikes[0];
        return latest ? (
          <span>
            <span class="small mono">{latest.reason}</span>
            <span class="small block"><time dateTime={latest.at}>{formatDate(latest.at, true)}</time></span>
          </span>
        ) : (
          "—"
        );
      },
    },
    {
      label: t("common.actions"),
      cell: (a) =>
        a.sending_blocked_at ? (
          <button type="button" onClick={() => setClearing(a)} aria-label={t("abuse.give_back_which", { address: a.address })}>{t("abuse.give_back")}</button>
        ) : null,
    },
  ];
  return (
    <>
      <h2>{t("abuse.title")}</h2>
      <p class="hint">{strikes === undefined ? "\u00a0" : strikes > 0 ? t("abuse.lead", { n: formatNumber(strikes) }) : t("abuse.lead_never")}</p>
      {error && <p class="form-error" role="alert">{error}</p>}
      {abuse.error ? (
        <ErrorBox problem={abuse.error} retry={abuse.reload} />
      ) : (
        <Table caption={t("abuse.title")} columns={columns} rows={abuse.data?.items} loading={abuse.loading} empty={t("abuse.empty")} rowKey={(a) => a.account_id} skeletonRows={2} />
      )}
      {clearing && (
        <Dialog title={t("abuse.give_back_title", { address: clearing.address })} onClose={() => setClearing(null)}>
          <p>{t("abuse.give_back_warning")}</p>
          <div class="buttons">
            <button type="button" class="primary" onClick={() => giveBack(clearing)}>{t("abuse.give_back")}</button>
            <button type="button" onClick={() => setClearing(null)}>{t("common.cancel")}</button>
          </div>
        </Dialog>
      )}
    </>
  );
}
