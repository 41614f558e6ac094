import { describe, expect, it } from "vitest";
import type { Schemas } from "../src/api";
import { privacyFacts } from "../src/mail/privacy";

function meta(authentication: unknown, privacy: Partial<Schemas["PrivacyIndex"]>, level: Schemas["Level"] = "sealed"): Schemas["MessageMeta"] {
  return {
    id: "m", tenant_id: "t", account_id: "a", received_at: "2026-12-06T10:00:00Z", size: 1, level, mailbox_id: "b", uid: 1,
    flags: [], keywords: [], rfc822_size: 1, envelope_from: "x@y.test", envelope_to: "z@w.test", authentication,
    privacy: { technic: 0, context: 0, comportment: 0, score: 0, grade: "E", ...privacy },
  } as Schemas["MessageMeta"];
}

const keys = (m: Schemas["MessageMeta"]) => privacyFacts(m).map((f) => `${f.good ? "+" : "-"}${f.key}`);

describe("the privacy index in plain words", () => {
  it("tells how mail from elsewhere travelled and who vouched for it", () => {
    expect(keys(meta({ spf: "pass", dkim: "pass", dmarc: "pass", tls: 13 }, { context: 60, comportment: 40 }))).toEqual([
      "+privacy.tls", "+privacy.dkim_pass", "+privacy.spf_pass", "+privacy.dmarc_pass", "+privacy.wrote_to", "+privacy.key_known", "+privacy.stored_sealed",
    ]);
    const facts = privacyFacts(meta({ spf: "pass", dkim: "pass", dmarc: "pass", tls: 12 }, {}));
    expect(facts[0]!.params).toEqual({ version: "1.2" });
  });

  it("says what failed or was missing", () => {
    expect(keys(meta({ spf: "softfail", dkim: "fail", dmarc: "fail", tls: null }, { context: 20 }, "standard"))).toEqual([
      "-privacy.no_tls", "-privacy.dkim_fail", "-privacy.spf_other", "-privacy.dmarc_fail", "+privacy.known_sender", "-privacy.stored_standard",
    ]);
    expect(keys(meta({ spf: "none", dkim: "none", dmarc: "none" }, {}, "dispersed"))).toContain("-privacy.dkim_none");
  });

  it("treats mail from an account of this service as never having crossed the internet", () => {
    expect(keys(meta({ spf: "local", dkim: "local", dmarc: "local", auth: "a@b.test", tls: 13 }, {}))).toEqual([
      "+privacy.local", "-privacy.new_sender", "+privacy.stored_sealed",
    ]);
  });
});
