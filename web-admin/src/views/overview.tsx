// The first page after sign-in: what needs a look, and the charts.
import { type Session, api, call } from "../api";
import { Chart } from "../charts";
import { formatBytes, formatLimit, t } from "../i18n";
import { PageHeader, useLoad } from "../ui";
import { PoolChart } from "./operator";

export function TrafficChart({ tenantId }: { tenantId: string }) {
  const traffic = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/traffic", { params: { path: { tenant_id: tenantId }, query: { days: 30 } } })), [tenantId]);
  const days = traffic.data?.days ?? [];
  return (
    <Chart
      title={t("chart.traffic")}
      kind="bars"
      loading={!traffic.data}
      labels={days.map((d) => d.date.slice(5))}
      series={[
        { name: t("chart.received"), values: days.map((d) => d.received), tone: "primary" },
        { name: t("chart.sent"), values: days.map((d) => d.sent), tone: "accent" },
        { name: t("chart.spam"), values: days.map((d) => d.spam), tone: "warn" },
      ]}
    />
  );
}

export function StorageChart({ tenantId }: { tenantId: string }) {
  const usage = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/usage", { params: { path: { tenant_id: tenantId }, query: { months: 12 } } })), [tenantId]);
  const months = usage.data?.months ?? [];
  return (
    <Chart
      title={t("chart.storage")}
      kind="lines"
      loading={!usage.data}
      format={formatBytes}
      labels={months.map((m) => m.month.slice(0, 7))}
      series={[
        { name: t("chart.storage_used"), values: months.map((m) => m.storage_bytes), tone: "primary" },
        { name: t("chart.storage_peak"), values: months.map((m) => m.storage_peak_bytes), tone: "muted" },
      ]}
    />
  );
}

export function Overview({ session }: { session: Session }) {
  const tenant = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}", { params: { path: { tenant_id: session.tenantId } } })), [session.tenantId]);
  const x = tenant.data;
  return (
    <section>
      <PageHeader title={x ? t("overview.title", { name: x.name }) : t("nav.overview")} />
      <div class="cards">
        <div class="card stat">
          <h2>{t("tenants.storage")}</h2>
          <p class="big">{x ? formatBytes(x.storage_used_bytes) : "\u00a0"}</p>
          <p class="small">{x ? t("tenants.of_quota", { quota: formatBytes(x.limits.storage_quota_bytes) }) : "\u00a0"}</p>
        </div>
        <div class="card stat">
          <h2>{t("limits.accounts")}</h2>
          <p class="big">{x ? formatLimit(x.limits.max_accounts) : "\u00a0"}</p>
          <p class="small">{t("overview.allowed")}</p>
        </div>
        <div class="card stat">
          <h2>{t("limits.domains")}</h2>
          <p class="big">{x ? formatLimit(x.limits.max_domains) : "\u00a0"}</p>
          <p class="small">{t("overview.allowed")}</p>
        </div>
      </div>
      <div class="charts">
        <TrafficChart tenantId={session.tenantId} />
        <StorageChart tenantId={session.tenantId} />
        {session.role === "operator" && <PoolChart />}
      </div>
    </section>
  );
}
