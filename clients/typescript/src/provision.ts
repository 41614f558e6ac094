// A reseller's provisioning script, typed from openapi/openapi.json: if the
// API changes under it, `npm run check` fails here first.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Tenant = components["schemas"]["Tenant"];
type Problem = components["schemas"]["ProblemDetails"];

export async function onboardCustomer(baseUrl: string, apiKey: string, customer: string, domain: string) {
  const api = createClient<paths>({ baseUrl });
  const { data: token, error: authError } = await api.POST("/v1/auth/token", {
    body: { grant_type: "api_key", api_key: apiKey },
  });
  if (!token) throw new Error(describe(authError));
  const headers = { Authorization: `Bearer ${token.access_token}` };

  const { data: tenant, error } = await api.POST("/v1/tenants", {
    headers,
    body: {
      name: customer,
      kind: "enterprise",
      limits: { max_accounts: 25, max_domains: 2, storage_quota_bytes: 25 * 5 * 1024 ** 3 },
      policy: { min_level: "sealed", allowed_jurisdictions: ["FR", "DE"] },
    },
  });
  if (!tenant) throw new Error(describe(error));

  const { data: onboarded, error: onboardError } = await api.POST("/v1/tenants/{tenant_id}/onboard", {
    headers,
    params: { path: { tenant_id: tenant.id } },
    body: { domain, admin: { address: `admin@${domain}`, password: crypto.randomUUID() } },
  });
  if (!onboarded) throw new Error(describe(onboardError));
  const toPublish = onboarded.dns_records.filter((r) => r.required).map((r) => `${r.name} ${r.type} ${r.value}`);

  const { data: page } = await api.GET("/v1/tenants", { headers, params: { query: { limit: 50 } } });
  const children: Tenant[] = page?.items.filter((t) => t.parent_id === token.tenant_id) ?? [];
  return { tenant, admin: onboarded.admin.address, toPublish, children: children.length };
}

function describe(problem: Problem | undefined): string {
  return problem ? `${problem.status} ${problem.title}: ${problem.detail}` : "no answer";
}
