// French and English. The browser's language picks one at first; the choice
// in the header is remembered. `fr` must translate every key of `en` (the type
// says so) and tests/i18n.test.ts checks placeholders match.
import { useEffect, useState } from "preact/hooks";
import { en } from "./locales/en";
import { fr } from "./locales/fr";

export type Key = keyof typeof en;
export type Language = "en" | "fr";
export const dictionaries: Record<Language, Record<Key, string>> = { en, fr };

const STORAGE_KEY = "caliop.admin.language";
const listeners = new Set<() => void>();

/** The person's own choice, or their browser's; null when neither names French or English. */
function chosenLanguage(): Language | null {
  const saved = typeof localStorage !== "undefined" ? localStorage.getItem(STORAGE_KEY) : null;
  if (saved === "en" || saved === "fr") return saved;
  const preferred = typeof navigator !== "undefined" ? navigator.languages ?? [navigator.language] : [];
  for (const tag of preferred) {
    const primary = tag.toLowerCase().split("-")[0];
    if (primary === "fr" || primary === "en") return primary;
  }
  return null;
}

const chosen = chosenLanguage();
let language: Language = chosen ?? "en";

/** The brand's language, used only when neither the person nor their browser chose one. */
export function adoptBrandLanguage(tag: string | null | undefined): void {
  if (chosen || (tag !== "en" && tag !== "fr") || tag === language) return;
  language = tag;
  document.documentElement.lang = tag;
  listeners.forEach((l) => l());
}

export function currentLanguage(): Language {
  return language;
}

export function setLanguage(next: Language): void {
  language = next;
  localStorage.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next;
  listeners.forEach((l) => l());
}

export function useLanguage(): Language {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((n) => n + 1);
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return language;
}

/** The text of `key` in the current language, with `{name}` placeholders filled. */
export function t(key: Key, params: Record<string, string | number> = {}): string {
  const text: string = dictionaries[language][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name: string) => (name in params ? String(params[name]) : `{${name}}`));
}

export function formatNumber(n: number): string {
  return new Intl.NumberFormat(language).format(n);
}

/** A limit: numbers this large mean "no limit" (the operator's own tenant). */
export function formatLimit(n: number): string {
  return n >= 2 ** 50 ? t("common.unlimited") : formatNumber(n);
}

/** A size in decimal units, with the current language's unit names (`1.5 MB`, `1,5 Mo`). */
export function formatBytes(n: number): string {
  if (n >= 2 ** 50) return t("common.unlimited");
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = value < 10 && unit > 0 ? 1 : 0;
  // Bytes spelt out ("512 bytes", "512 octets"): the short form of the byte is not a symbol in every language.
  return new Intl.NumberFormat(language, { style: "unit", unit: units[unit], unitDisplay: unit === 0 ? "long" : "short", maximumFractionDigits: digits }).format(value);
}

export function formatDate(iso: string | null | undefined, withTime = false): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return new Intl.DateTimeFormat(language, withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" }).format(d);
}

/** A number of whole days from today, in words: "in 12 days", "tomorrow", "3 days ago" (French: "dans 12 jours"…). */
export function formatDays(days: number): string {
  return new Intl.RelativeTimeFormat(language, { numeric: "auto" }).format(days, "day");
}

export function formatMoney(cents: number, currency: string): string {
  return new Intl.NumberFormat(language, { style: "currency", currency: currency.toUpperCase() }).format(cents / 100);
}
