// The privacy index of a message (mail/src/privacy.rs via MessageMeta), told
// as facts in plain words: how it travelled, who vouched for its sender,
// whether you know them, and how it is stored.
import type { Schemas } from "../api";
import type { Key } from "../i18n";

export interface Fact {
  key: Key;
  params?: Record<string, string | number>;
  good: boolean;
}

interface Authentication {
  spf?: string;
  dkim?: string;
  dmarc?: string;
  tls?: number | null;
  auth?: string;
  submitted?: boolean;
  appended?: boolean;
}

export function privacyFacts(meta: Schemas["MessageMeta"]): Fact[] {
  const auth = (meta.authentication ?? {}) as Authentication;
  const facts: Fact[] = [];
  const local = auth.spf === "local" || auth.submitted || auth.appended;
  if (local) {
    facts.push({ key: "privacy.local", good: true });
  } else {
    if (auth.tls === 13 || auth.tls === 12) facts.push({ key: "privacy.tls", params: { version: auth.tls === 13 ? "1.3" : "1.2" }, good: true });
    else facts.push({ key: "privacy.no_tls", good: false });
    facts.push(auth.dkim === "pass" ? { key: "privacy.dkim_pass", good: true } : { key: auth.dkim === "fail" ? "privacy.dkim_fail" : "privacy.dkim_none", good: false });
    facts.push(auth.spf === "pass" ? { key: "privacy.spf_pass", good: true } : { key: "privacy.spf_other", params: { result: auth.spf ?? "none" }, good: false });
    facts.push(auth.dmarc === "pass" ? { key: "privacy.dmarc_pass", good: true } : { key: auth.dmarc === "fail" ? "privacy.dmarc_fail" : "privacy.dmarc_none", good: false });
  }
  const context = meta.privacy.context;
  if (context >= 60) facts.push({ key: "privacy.wrote_to", good: true });
  else if (context >= 20) facts.push({ key: "privacy.known_sender", good: true });
  else facts.push({ key: "privacy.new_sender", good: false });
  if (meta.privacy.comportment >= 40) facts.push({ key: "privacy.key_known", good: true });
  facts.push(
    meta.level === "standard"
      ? { key: "privacy.stored_standard", good: false }
      : { key: meta.level === "dispersed" || meta.level === "end-to-end" ? "privacy.stored_dispersed" : "privacy.stored_sealed", good: true },
  );
  return facts;
}
