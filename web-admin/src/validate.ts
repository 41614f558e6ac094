// Client-side checks that mirror the API's own rules (tenants/src/model.rs,
// tenants/src/password.rs, api/src/brand_assets.rs, the route handlers), so a
// form says what is wrong before it is sent. tests/validation.test.ts runs
// them on the vectors in tests/vectors.json, which a Rust test runs through
// the API's parsers too: both sides must agree on every vector.
//
// Each check returns null when the value is fine, or the API's wording.

export type Check = (value: string) => string | null;

export const PASSWORD_MIN = 10;
export const PASSWORD_MAX = 1024;

export function domainName(input: string): string | null {
  const name = input.replace(/\.+$/, "").toLowerCase();
  const invalid = (why: string) => `\`${input}\` is not a valid domain name: ${why}`;
  if (name === "") return invalid("it is empty");
  if (name.length > 253) return invalid("it is longer than 253 characters");
  const labels = name.split(".");
  if (labels.length < 2) return invalid("it needs at least two labels, like example.com");
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) return invalid("each label must be 1 to 63 characters long");
    if (!/^[a-z0-9-]+$/.test(label)) {
      return invalid("labels may contain only letters, digits and hyphens (use the xn-- form for international names)");
    }
    if (label.startsWith("-") || label.endsWith("-")) return invalid("a label cannot start or end with a hyphen");
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return invalid("the top-level label cannot be numeric");
  return null;
}

export function localPart(input: string): string | null {
  const local = input.toLowerCase();
  const invalid = (why: string) => `\`${input}\` is not a valid mailbox name: ${why}`;
  if (local.length === 0 || utf8Length(local) > 64) return invalid("it must be 1 to 64 characters long");
  if (!/^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+$/.test(local)) {
    return invalid("only letters, digits and !#$%&'*+/=?^_`{|}~-. are allowed");
  }
  if (local.startsWith(".") || local.endsWith(".") || local.includes("..")) {
    return invalid("dots cannot start, end or repeat");
  }
  return null;
}

export function emailAddress(input: string): string | null {
  const at = input.lastIndexOf("@");
  if (at < 0) return `\`${input}\` is not an email address: it has no \`@\``;
  const local = input.slice(0, at);
  const domain = input.slice(at + 1);
  const problem = localPart(local) ?? domainName(domain);
  if (problem) return problem;
  const normalized = `${local.toLowerCase()}@${domain.replace(/\.+$/, "").toLowerCase()}`;
  if (normalized.length > 254) return `\`${input}\` is longer than 254 characters`;
  return null;
}

export function password(input: string): string | null {
  const chars = [...input].length;
  if (chars < PASSWORD_MIN) return `the password must be at least ${PASSWORD_MIN} characters long`;
  if (chars > PASSWORD_MAX) return `the password must be at most ${PASSWORD_MAX} characters long`;
  return null;
}

/** The WCAG 2 relative luminance of `#rrggbb`, or null if it is not one. */
export function luminance(color: string): number | null {
  const m = /^#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})$/.exec(color);
  if (!m) return null;
  const channel = (hex: string) => {
    const c = parseInt(hex, 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(m[1]!) + 0.7152 * channel(m[2]!) + 0.0722 * channel(m[3]!);
}

export function contrast(a: string, b: string): number | null {
  const la = luminance(a);
  const lb = luminance(b);
  if (la === null || lb === null) return null;
  const [hi, lo] = la > lb ? [la, lb] : [lb, la];
  return (hi + 0.05) / (lo + 0.05);
}

/** A brand colour must be `#rrggbb` and contrast 4.5:1 with white (WCAG AA). */
export function brandColor(field: string): Check {
  return (color) => {
    const ratio = contrast(color, "#ffffff");
    if (ratio === null) return `\`${field}\` ${JSON.stringify(color)} is not a colour in the form #rrggbb`;
    if (ratio < 4.5) {
      return `\`${field}\` ${color} has a contrast of ${ratio.toFixed(2)}:1 with white; at least 4.5:1 is needed for text to stay readable (WCAG AA)`;
    }
    return null;
  };
}

function printable(s: string): boolean {
  // Rust's char::is_control: C0, DEL and C1 controls.
  return ![...s].some((c) => /[\u0000-\u001f\u007f-\u009f]/.test(c));
}

export function productName(input: string): string | null {
  const n = [...input.trim()].length;
  return n >= 1 && n <= 60 && printable(input) ? null : "`product_name` must be 1 to 60 printable characters";
}

export function displayName(input: string): string | null {
  const n = [...input.trim()].length;
  return n >= 1 && n <= 200 && printable(input) ? null : "the display name must be 1 to 200 printable characters";
}

export function tenantName(input: string): string | null {
  const n = [...input.trim()].length;
  return n >= 1 && n <= 200 ? null : "the tenant name must be 1 to 200 characters long";
}

export function apiKeyName(input: string): string | null {
  const n = [...input.trim()].length;
  return n >= 1 && n <= 200 ? null : "the key name must be 1 to 200 characters long";
}

export function planName(input: string): string | null {
  const n = [...input.trim()].length;
  return n >= 1 && n <= 100 ? null : "`name` must be 1 to 100 characters";
}

export function httpsUrl(field: string): Check {
  return (url) => {
    if (!url.startsWith("https://")) return `\`${field}\` must be an https:// URL`;
    try {
      const parsed = new URL(url);
      if (!parsed.hostname || /\s/.test(url)) throw new Error();
    } catch {
      return `\`${field}\` ${JSON.stringify(url)} is not a valid https:// URL`;
    }
    return null;
  };
}

export function nonNegativeInteger(field: string): Check {
  return (value) => (/^\d+$/.test(value.trim()) ? null : `\`${field}\` must be a whole number, 0 or more`);
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** Runs `checks` over `values`, keeping the first failure per field. */
export function validate<K extends string>(
  values: Record<K, string>,
  checks: Partial<Record<K, Check | null>>,
): Partial<Record<K, string>> {
  const errors: Partial<Record<K, string>> = {};
  for (const key of Object.keys(checks) as K[]) {
    const check = checks[key];
    const failure = check ? check(values[key]) : null;
    if (failure) errors[key] = failure;
  }
  return errors;
}
