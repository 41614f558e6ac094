// The privacy index: a grade from A to E, and the facts behind it.
import { type Key, t } from "../../i18n";
import type { MessageMeta } from "../messages";
import { privacyFacts } from "../privacy";

const TONE: Record<string, string> = { A: "good", B: "good", C: "warn", D: "bad", E: "bad" };

export function Grade({ grade }: { grade: string }) {
  return (
    <span class={`badge grade ${TONE[grade] ?? "neutral"}`} title={t("privacy.grade_named", { grade })}>
      <span aria-hidden="true">{grade}</span>
      <span class="visually-hidden">{t("privacy.grade_named", { grade })}</span>
    </span>
  );
}

export function PrivacyPanel({ meta }: { meta: MessageMeta }) {
  const facts = privacyFacts(meta);
  return (
    <details class="privacy">
      <summary>
        <Grade grade={meta.privacy.grade} /> {t("privacy.summary", { grade: meta.privacy.grade, score: meta.privacy.score })}
      </summary>
      <p class="small">{t("privacy.explain")}</p>
      <ul class="facts">
        {facts.map((f) => (
          <li key={f.key} class={f.good ? "good" : "bad"}>
            <span aria-hidden="true">{f.good ? "✓" : "✗"} </span>
            {t(f.key as Key, f.params)}
          </li>
        ))}
      </ul>
    </details>
  );
}
