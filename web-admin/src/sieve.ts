// The tenant-wide filter's simple rules, and the Sieve script (RFC 5228)
// they make: one `if` per rule, in order, every rule that matches applies.
// Pure functions, no DOM: tests/sieve.test.ts checks the exact text.
//
// A script this module made can be read back into its rules (parseSieve):
// anything else (written by hand, or changed in the text editor) stays text.

export const HEADERS = ["subject", "from", "to", "list-id"] as const;
export const MATCHES = ["contains", "is"] as const;
export const ACTIONS = ["fileinto", "seen", "discard"] as const;

export type Header = (typeof HEADERS)[number];
export type Match = (typeof MATCHES)[number];
export type Action = (typeof ACTIONS)[number];

export interface Rule {
  /** Which header the rule looks at. */
  header: Header;
  /** `contains` a piece of text, or `is` exactly that (case-insensitive, as Sieve compares by default). */
  match: Match;
  value: string;
  /** File into `folder`, mark as read (the `\Seen` flag), or discard. */
  action: Action;
  /** The folder, for `fileinto`; ignored otherwise. */
  folder: string;
}

/** How each header is written in the script. */
const HEADER_NAMES: Record<Header, string> = { subject: "Subject", from: "From", to: "To", "list-id": "List-Id" };

/** The IMAP flag "mark as read" sets. */
export const SEEN = "\\Seen";

const INDENT = "    ";

/** `s` as a Sieve quoted string: backslash and double quote escaped. */
export function quote(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The text of a Sieve quoted string's inside: `\x` is `x`, whatever `x` is. */
export function unquote(inside: string): string {
  return inside.replace(/\\(.)/gs, "$1");
}

/** The extensions `rules` need, in a fixed order. */
export function requirements(rules: Rule[]): string[] {
  const needed: string[] = [];
  if (rules.some((r) => r.action === "fileinto")) needed.push("fileinto");
  if (rules.some((r) => r.action === "seen")) needed.push("imap4flags");
  return needed;
}

/**
 * The test of one rule. An address header compared exactly (`From is
 * boss@example.com`) is an `address` test, which looks at the address
 * itself and not at the name in front of it; anything else is a `header`
 * test on the whole (decoded) header.
 */
function test(rule: Rule): string {
  const kind = rule.match === "is" && (rule.header === "from" || rule.header === "to") ? "address" : "header";
  return `${kind} :${rule.match} ${quote(HEADER_NAMES[rule.header])} ${quote(rule.value)}`;
}

function action(rule: Rule): string {
  switch (rule.action) {
    case "fileinto":
      return `fileinto ${quote(rule.folder)};`;
    case "seen":
      return `addflag ${quote(SEEN)};`;
    case "discard":
      return "discard;";
  }
}

/** The Sieve script for `rules`; empty when there are none. */
export function generateSieve(rules: Rule[]): string {
  const blocks: string[] = [];
  const needed = requirements(rules);
  if (needed.length > 0) blocks.push(`require [${needed.map(quote).join(", ")}];\n`);
  for (const rule of rules) blocks.push(`if ${test(rule)} {\n${INDENT}${action(rule)}\n}\n`);
  return blocks.join("\n");
}

const STRING = String.raw`"((?:[^"\\]|\\.)*)"`;
const REQUIRE = new RegExp(String.raw`^require \[(?:${STRING}(?:, ${STRING})*)\];\n\n?`, "s");
const RULE = new RegExp(
  String.raw`^if (?:header|address) :(contains|is) ${STRING} ${STRING} \{\n {4}(?:fileinto ${STRING};|addflag ${STRING};|(discard);)\n\}\n\n?`,
  "s",
);

/**
 * The rules a script stands for, when it is exactly what generateSieve
 * makes of them; null for any other script (it is then edited as text).
 */
export function parseSieve(script: string): Rule[] | null {
  const text = script.replace(/\r\n/g, "\n");
  let rest = text;
  const require = REQUIRE.exec(rest);
  if (require) rest = rest.slice(require[0].length);
  const rules: Rule[] = [];
  while (rest.length > 0) {
    const m = RULE.exec(rest);
    if (!m) return null;
    const [all, match, header, value, folder, flag, discard] = m;
    const name = HEADERS.find((h) => HEADER_NAMES[h] === unquote(header!));
    if (!name) return null;
    let act: Action;
    if (folder !== undefined) act = "fileinto";
    else if (flag !== undefined && unquote(flag) === SEEN) act = "seen";
    else if (discard) act = "discard";
    else return null;
    rules.push({ header: name, match: match as Match, value: unquote(value!), action: act, folder: folder === undefined ? "" : unquote(folder) });
    rest = rest.slice(all!.length);
  }
  // Whatever was read must come back the same: else it was not ours.
  return generateSieve(rules) === text ? rules : null;
}

/** A rule to start from. */
export function newRule(): Rule {
  return { header: "subject", match: "contains", value: "", action: "fileinto", folder: "" };
}
