// Billing of a tenant: plan, seats, status, next invoice, past invoices, and
// the way to pay (Stripe Checkout when the instance has a provider). The
// operator or the tenant's reseller picks the plan here.
import { useState } from "preact/hooks";
import { type Schemas, type Session, api, call } from "../api";
import { formatBytes, formatDate, formatMoney, formatNumber, t } from "../i18n";
import { Badge, type Column, ErrorBox, FormError, Table, statusLabel, useLoad } from "../ui";

type Invoice = Schemas["Invoice"];

export function Billing({ tenantId, session }: { tenantId: string; session: Session }) {
  const billing = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/billing", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const canAssign = tenantId !== session.tenantId && (session.role === "operator" || session.role === "reseller_admin");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const b = billing.data;

  const checkout = async () => {
    setBusy(true);
    setError(null);
    try {
      const { url } = await call(api.POST("/v1/tenants/{tenant_id}/billing/checkout", { params: { path: { tenant_id: tenantId } } }));
      location.assign(url);
    } catch (e) {
      setError((e as { detail: string }).detail);
      setBusy(false);
    }
  };

  const columns: Column<Invoice>[] = [
    { label: t("billing.invoice"), cell: (i) => i.number ?? i.id },
    { label: t("billing.period"), cell: (i) => (i.period_start ? `${formatDate(i.period_start)} – ${formatDate(i.period_end)}` : "—") },
    { label: t("billing.amount"), cell: (i) => formatMoney(i.amount_due, i.currency), class: "num" },
    { label: t("billing.status"), cell: (i) => <Badge status={i.status} /> },
    { label: t("billing.document"), cell: (i) => (i.hosted_url ? <a href={i.hosted_url} target="_blank" rel="noopener noreferrer">{t("billing.view_invoice")}</a> : "—") },
  ];

  if (billing.error) return <ErrorBox problem={billing.error} retry={billing.reload} />;
  return (
    <>
      <div class="cards">
        <div class="card stat">
          <h2>{t("billing.plan")}</h2>
          <p class="big">{b ? (b.plan?.name ?? t("billing.no_plan")) : "\u00a0"}</p>
          {b?.plan && (
            <p class="small">
              {t("billing.seat_price", { price: formatMoney(b.plan.seat_price_cents, b.plan.currency) })} · {t("billing.storage_per_seat", { size: formatBytes(b.plan.storage_per_seat_bytes) })}
            </p>
          )}
        </div>
        <div class="card stat">
          <h2>{t("billing.seats")}</h2>
          <p class="big">{b ? formatNumber(b.seats) : "\u00a0"}</p>
          {b && <p class="small">{t("billing.committed", { n: formatNumber(b.committed_seats) })}</p>}
        </div>
        <div class="card stat">
          <h2>{t("billing.status")}</h2>
          <p class="big">{b ? <Badge status={b.status} label={statusLabel(b.status, "billingstatus")} /> : "\u00a0"}</p>
          {b?.sending_suspended && <p class="warning">{t("billing.sending_suspended")}</p>}
          {b?.past_due_since && <p class="small">{t("billing.past_due_since", { date: formatDate(b.past_due_since) })}</p>}
        </div>
        <div class="card stat">
          <h2>{t("billing.next_invoice")}</h2>
          <p class="big">{b?.next_invoice ? formatMoney(b.next_invoice.amount_cents, b.next_invoice.currency) : b ? "—" : "\u00a0"}</p>
          {b?.next_invoice && <p class="small">{t("billing.next_detail", { seats: b.next_invoice.seats, date: formatDate(b.next_invoice.date) })}</p>}
        </div>
      </div>

      <section class="card" aria-labelledby="pay-title">
        <h2 id="pay-title">{t("billing.payment")}</h2>
        {b?.provider === "none" ? (
          <p data-testid="provider-none">{t("billing.provider_none")}</p>
        ) : (
          <>
            <p>{t("billing.checkout_explain")}</p>
            <button type="button" class="primary" onClick={checkout} disabled={busy || !b?.plan}>{busy ? t("common.working") : t("billing.checkout")}</button>
          </>
        )}
        {b?.public_funder && <p class="small">{t("billing.public_funder")}</p>}
        <FormError message={error} />
      </section>

      {canAssign && <AssignPlan tenantId={tenantId} current={b?.plan?.id ?? null} onDone={billing.reload} />}

      <h2>{t("billing.invoices")}</h2>
      <Table caption={t("billing.invoices")} columns={columns} rows={b?.invoices} loading={billing.loading} empty={t("billing.no_invoices")} rowKey={(i) => i.id} skeletonRows={2} />
    </>
  );
}

function AssignPlan({ tenantId, current, onDone }: { tenantId: string; current: string | null; onDone: () => void }) {
  const plans = useLoad(() => call(api.GET("/v1/plans")), []);
  const [plan, setPlan] = useState(current ?? "");
  const [seats, setSeats] = useState("0");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!plan) {
      setError(t("billing.pick_plan"));
      return;
    }
    if (!/^\d+$/.test(seats)) {
      setError("`committed_seats` cannot be negative");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await call(api.PUT("/v1/tenants/{tenant_id}/plan", { params: { path: { tenant_id: tenantId } }, body: { plan_id: plan, committed_seats: Number(seats) } }));
      onDone();
    } catch (err) {
      setError((err as { detail: string }).detail);
    } finally {
      setBusy(false);
    }
  };
  const list = (plans.data ?? []) as Schemas["Plan"][];
  return (
    <form class="card inline-form" onSubmit={submit} aria-labelledby="assign-title">
      <h2 id="assign-title">{t("billing.assign")}</h2>
      <div class="field">
        <label for="assign-plan">{t("billing.plan")}</label>
        <select id="assign-plan" value={plan} onInput={(e) => setPlan(e.currentTarget.value)}>
          <option value="">{t("billing.pick_plan")}</option>
          {list.map((p) => <option key={p.id} value={p.id}>{p.name} — {formatMoney(p.seat_price_cents, p.currency)}</option>)}
        </select>
      </div>
      <div class="field">
        <label for="assign-seats">{t("billing.committed_seats")}</label>
        <input id="assign-seats" inputMode="numeric" value={seats} onInput={(e) => setSeats(e.currentTarget.value)} />
      </div>
      <button type="submit" class="primary" disabled={busy}>{t("billing.assign_submit")}</button>
      <FormError message={error} />
    </form>
  );
}
