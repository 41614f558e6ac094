// A reseller's roll-up: each customer's storage, accounts and mail this
// month, with the same numbers as CSV.
import { useState } from "preact/hooks";
import { type Schemas, type Session, api, call, fetchAuthorized } from "../api";
import { formatBytes, formatNumber, t } from "../i18n";
import { type Column, ErrorBox, FormError, PageHeader, QuotaBar, Table, useLoad } from "../ui";

type Usage = Schemas["TenantUsage"];

export function Usage({ session }: { session: Session }) {
  const usage = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/usage", { params: { path: { tenant_id: session.tenantId }, query: { children: true, months: 1 } } })),
    [session.tenantId],
  );
  const [error, setError] = useState<string | null>(null);
  const exportCsv = async () => {
    setError(null);
    try {
      const response = await fetchAuthorized(`/v1/tenants/${session.tenantId}/usage?children=true&months=12&format=csv`);
      const url = URL.createObjectURL(await response.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = `usage-${new Date().toISOString().slice(0, 10)}.csv`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      setError((e as { detail: string }).detail);
    }
  };
  const month = (u: Usage) => u.months.at(-1);
  const columns: Column<Usage>[] = [
    { label: t("tenants.name"), cell: (u) => <a href={`/admin/tenants/${u.tenant_id}`}>{u.name}</a> },
    {
      label: t("tenants.storage"),
      cell: (u) => (
        <div class="quota-cell">
          <QuotaBar used={u.storage_used_bytes} total={u.storage_quota_bytes} label={t("tenants.storage_of", { name: u.name })} />
          <span class="small">{formatBytes(u.storage_used_bytes)} / {formatBytes(u.storage_quota_bytes)}</span>
        </div>
      ),
    },
    { label: t("usage.active_accounts"), cell: (u) => formatNumber(month(u)?.active_accounts ?? 0), class: "num" },
    { label: t("usage.received"), cell: (u) => formatNumber(month(u)?.messages_received ?? 0), class: "num" },
    { label: t("usage.sent"), cell: (u) => formatNumber(month(u)?.messages_sent ?? 0), class: "num" },
  ];
  const u = usage.data;
  return (
    <section>
      <PageHeader title={t("nav.usage")}>
        <button type="button" onClick={exportCsv}>{t("usage.export")}</button>
      </PageHeader>
      <FormError message={error} />
      {usage.error && <ErrorBox problem={usage.error} retry={usage.reload} />}
      <div class="cards">
        <div class="card stat">
          <h2>{t("usage.total_storage")}</h2>
          <p class="big">{u ? formatBytes(u.total_storage_used_bytes) : "\u00a0"}</p>
        </div>
        <div class="card stat">
          <h2>{t("usage.total_accounts")}</h2>
          <p class="big">{u ? formatNumber(u.total_active_accounts) : "\u00a0"}</p>
        </div>
      </div>
      <Table caption={t("nav.usage")} columns={columns} rows={u?.children} loading={usage.loading} empty={t("usage.empty")} rowKey={(x) => x.tenant_id} />
    </section>
  );
}
