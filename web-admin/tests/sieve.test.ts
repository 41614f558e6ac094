import { describe, expect, it } from "vitest";
import { type Rule, generateSieve, parseSieve, quote, requirements, unquote } from "../src/sieve";

const rule = (r: Partial<Rule>): Rule => ({ header: "subject", match: "contains", value: "", action: "fileinto", folder: "", ...r });

describe("Sieve quoted strings", () => {
  it("are wrapped in double quotes", () => {
    expect(quote("Invoices")).toBe('"Invoices"');
    expect(quote("")).toBe('""');
  });
  it("escape the double quote and the backslash, and nothing else", () => {
    expect(quote('say "hi"')).toBe('"say \\"hi\\""');
    expect(quote("C:\\temp")).toBe('"C:\\\\temp"');
    expect(quote('\\"')).toBe('"\\\\\\""');
    expect(quote("Réunion * ? $")).toBe('"Réunion * ? $"');
  });
  it("read back to what was quoted", () => {
    for (const s of ['say "hi"', "C:\\temp", '\\"', "\\", "plain"]) {
      expect(unquote(quote(s).slice(1, -1))).toBe(s);
    }
  });
});

describe("the script the rules make", () => {
  it("is empty without rules", () => {
    expect(generateSieve([])).toBe("");
    expect(requirements([])).toEqual([]);
  });

  it("files into a folder", () => {
    expect(generateSieve([rule({ value: "invoice", folder: "Invoices" })])).toBe(
      'require ["fileinto"];\n' +
        "\n" +
        'if header :contains "Subject" "invoice" {\n' +
        '    fileinto "Invoices";\n' +
        "}\n",
    );
  });

  it("needs imap4flags to mark as read, and nothing to discard", () => {
    expect(generateSieve([rule({ header: "list-id", value: "<news.example.com>", action: "seen" }), rule({ header: "from", value: "spam", action: "discard" })])).toBe(
      'require ["imap4flags"];\n' +
        "\n" +
        'if header :contains "List-Id" "<news.example.com>" {\n' +
        '    addflag "\\\\Seen";\n' +
        "}\n" +
        "\n" +
        'if header :contains "From" "spam" {\n' +
        "    discard;\n" +
        "}\n",
    );
    expect(generateSieve([rule({ value: "x", action: "discard" })])).toBe('if header :contains "Subject" "x" {\n    discard;\n}\n');
  });

  it("keeps the rules' order, lists each extension once, and compares addresses exactly with `address`", () => {
    const rules = [
      rule({ header: "from", match: "is", value: "boss@example.com", action: "seen" }),
      rule({ header: "to", match: "is", value: "sales@example.com", folder: "Sales" }),
      rule({ header: "subject", match: "is", value: "Weekly report", folder: "Reports/Weekly" }),
      rule({ header: "to", match: "contains", value: "@lists.example.com", action: "seen" }),
    ];
    expect(requirements(rules)).toEqual(["fileinto", "imap4flags"]);
    expect(generateSieve(rules)).toBe(
      `require ["fileinto", "imap4flags"];

if address :is "From" "boss@example.com" {
    addflag "\\\\Seen";
}

if address :is "To" "sales@example.com" {
    fileinto "Sales";
}

if header :is "Subject" "Weekly report" {
    fileinto "Reports/Weekly";
}

if header :contains "To" "@lists.example.com" {
    addflag "\\\\Seen";
}
`,
    );
  });

  it("escapes what people type in values and folder names", () => {
    expect(generateSieve([rule({ value: 'the "urgent" one \\o/', folder: 'Back\\slash "quoted"' })])).toBe(
      'require ["fileinto"];\n\nif header :contains "Subject" "the \\"urgent\\" one \\\\o/" {\n    fileinto "Back\\\\slash \\"quoted\\"";\n}\n',
    );
  });
});

describe("reading a script back into rules", () => {
  const sets: Rule[][] = [
    [],
    [rule({ value: "invoice", folder: "Invoices" })],
    [
      rule({ header: "from", match: "is", value: "boss@example.com", action: "seen" }),
      rule({ header: "list-id", value: 'odd "list" \\ name', folder: 'A "B" \\ C' }),
      rule({ header: "to", value: "x", action: "discard" }),
    ],
  ];
  it("gives back the rules of a script it made", () => {
    for (const rules of sets) expect(parseSieve(generateSieve(rules))).toEqual(rules);
  });
  it("takes CRLF line ends too", () => {
    const rules = sets[2]!;
    expect(parseSieve(generateSieve(rules).replace(/\n/g, "\r\n"))).toEqual(rules);
  });
  it("leaves anything else as text", () => {
    expect(parseSieve('require "fileinto";\nif header :contains "subject" "invoice" { fileinto "Invoices"; }')).toBeNull();
    expect(parseSieve('require ["fileinto"];\n\nif header :contains "Subject" "x" {\n    fileinto "A";\n    stop;\n}\n')).toBeNull();
    // A require list that does not fit the rules is not one this editor wrote.
    expect(parseSieve('require ["fileinto", "imap4flags"];\n\nif header :contains "Subject" "x" {\n    fileinto "A";\n}\n')).toBeNull();
    expect(parseSieve('if header :contains "X-Spam" "yes" {\n    discard;\n}\n')).toBeNull();
    expect(parseSieve('require ["imap4flags"];\n\nif header :contains "Subject" "x" {\n    addflag "\\\\Flagged";\n}\n')).toBeNull();
    expect(parseSieve("keep;\n")).toBeNull();
  });
});
