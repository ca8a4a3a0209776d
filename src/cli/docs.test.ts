// The docs say what the code does: every command's `bin/weft CMD --help` against docs/cli.md (each
// flag the CLI prints is documented in that command's section, each flag a section lists exists,
// each command has a section), and every link in the README and the docs leads to a file that exists.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const WEFT = join(ROOT, "bin", "weft");
const CLI_DOC = join(ROOT, "docs", "cli.md");
const pexec = promisify(execFile);

async function help(path: readonly string[]): Promise<string> {
  const { stdout } = await pexec(process.execPath, [WEFT, ...path, "--help"], {
    encoding: "utf8",
    env: { ...process.env, COLUMNS: "200" },
  });
  return stdout;
}

/** The lines of one section of commander's help ("Options:", "Commands:"), up to the next blank line. */
function helpSection(text: string, title: string): string[] {
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l === title);
  if (start < 0) return [];
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.trim() === "") break;
    out.push(l);
  }
  return out;
}

/** Flags in an option's first column or in a docs code span: "-o, --output <format>" -> -o, --output. */
function flagsIn(text: string): string[] {
  return [...text.matchAll(/(?:^|[\s,])(--?[A-Za-z][A-Za-z0-9-]*)/g)].map((m) => m[1]);
}

interface CliCommand {
  path: string[];
  flags: Set<string>;
}

/** Every command and subcommand the CLI has, found by walking `--help`, with its flags. */
async function cliCommands(): Promise<CliCommand[]> {
  const out: CliCommand[] = [];
  const walk = async (path: string[]): Promise<void> => {
    const text = await help(path);
    const subs = helpSection(text, "Commands:")
      .filter((l) => /^ {2}\S/.test(l))
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((c) => c !== "help");
    if (path.length > 0 && subs.length === 0) {
      const flags = new Set(
        helpSection(text, "Options:")
          .filter((l) => /^ {2}-/.test(l))
          .flatMap((l) => flagsIn(l.trim().split(/\s{2,}/)[0]))
          .filter((f) => f !== "-h" && f !== "--help"),
      );
      out.push({ path, flags });
    }
    for (const s of subs) await walk([...path, s]);
  };
  await walk([]);
  return out;
}

interface DocSection {
  heading: string;
  /** "lab probe" for "### weft lab probe"; undefined for sections that are not a command. */
  command?: string;
  planned: boolean;
  flags: Set<string>;
  includesStoreFlags: boolean;
}

/** docs/cli.md's sections, each with the flags its list items name ("- `--flag ARG`, `-x`: ..."). */
function docSections(md: string): DocSection[] {
  const sections: DocSection[] = [];
  let cur: DocSection | undefined;
  let item: string | undefined;
  const endItem = () => {
    if (cur && item !== undefined) {
      const lead = /^((?:`[^`]+`(?:,\s*)?)+)/.exec(item);
      if (lead) for (const span of lead[1].matchAll(/`([^`]+)`/g)) for (const f of flagsIn(span[1])) cur.flags.add(f);
      if (/^store flags\b/i.test(item)) cur.includesStoreFlags = true;
    }
    item = undefined;
  };
  for (const line of md.split("\n")) {
    const h = /^#{2,3} (.+)$/.exec(line);
    if (h) {
      endItem();
      const words = h[1].split(/\s+/);
      let command: string | undefined;
      if (words[0] === "weft") {
        const rest: string[] = [];
        for (const w of words.slice(1)) {
          if (!/^[a-z][a-z-]*$/.test(w)) break;
          rest.push(w);
        }
        command = rest.join(" ");
      }
      cur = { heading: h[1], command, planned: /\(planned\)/i.test(h[1]), flags: new Set(), includesStoreFlags: false };
      sections.push(cur);
    } else if (line.startsWith("- ")) {
      endItem();
      item = line.slice(2);
    } else if (item !== undefined && /^\s+\S/.test(line)) {
      item += " " + line.trim();
    } else {
      endItem();
    }
  }
  endItem();
  return sections;
}

test(
  "docs/cli.md documents every command and every flag `bin/weft CMD --help` prints, and lists no flag the CLI lacks",
  { timeout: 120_000 },
  async () => {
    const cli = await cliCommands();
    assert.ok(cli.length >= 15, `found ${cli.length} commands by walking --help`);
    const docs = docSections(readFileSync(CLI_DOC, "utf8"));
    const storeFlags = docs.find((s) => /^store flags$/i.test(s.heading))?.flags ?? new Set<string>();
    const problems: string[] = [];
    const byName = new Map(cli.map((c) => [c.path.join(" "), c]));
    for (const c of cli) {
      const name = c.path.join(" ");
      const built = docs.filter((s) => s.command === name && !s.planned);
      if (built.length === 0) {
        problems.push(`weft ${name}: no "### weft ${name}" section in docs/cli.md`);
        continue;
      }
      const documented = new Set(built.flatMap((s) => [...s.flags, ...(s.includesStoreFlags ? storeFlags : [])]));
      for (const f of c.flags)
        if (!documented.has(f)) problems.push(`weft ${name} ${f}: printed by --help, not in docs/cli.md`);
    }
    for (const s of docs) {
      if (s.command === undefined || s.planned) continue;
      const c = byName.get(s.command);
      if (!c) {
        problems.push(
          `docs/cli.md "${s.heading}": weft has no command "${s.command}" (mark the section "(planned)" if it is not built yet)`,
        );
        continue;
      }
      const flags = new Set([...s.flags, ...(s.includesStoreFlags ? storeFlags : [])]);
      for (const f of flags)
        if (!c.flags.has(f))
          problems.push(`docs/cli.md "${s.heading}" lists ${f}, which \`weft ${s.command} --help\` does not have`);
    }
    assert.deepEqual(problems, []);
  },
);

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchors(md: string): Set<string> {
  return new Set(
    [...md.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      m[1]
        .toLowerCase()
        .replace(/[^a-z0-9 _-]/g, "")
        .replace(/ /g, "-"),
    ),
  );
}

function markdownFiles(): string[] {
  const out = [
    join(ROOT, "README.md"),
    ...readdirSync(join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => join(ROOT, "docs", f)),
  ];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name === "README.md") out.push(join(dir, e.name));
    }
  };
  walk(join(ROOT, "src"));
  return out;
}

test("README and docs link only to files (and headings) that exist; the README names the in-repo CLI reference", () => {
  const problems: string[] = [];
  for (const file of markdownFiles()) {
    const md = readFileSync(file, "utf8");
    const rel = relative(ROOT, file);
    for (const m of md.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
      const [path, anchor] = target.split("#");
      const dest = path === "" ? file : resolve(dirname(file), path);
      if (!existsSync(dest)) problems.push(`${rel}: link to ${target}: no such file`);
      else if (anchor && dest.endsWith(".md") && !anchors(readFileSync(dest, "utf8")).has(anchor))
        problems.push(`${rel}: link to ${target}: no such heading`);
    }
  }
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  // Paths the README names in prose or code (docs/x.md, scripts/y.sh) must exist as well.
  for (const m of readme.matchAll(/(?<![\w/.-])((?:docs|src|scripts|examples|bench|deploy)\/[\w./-]*\w)/g)) {
    if (!existsSync(join(ROOT, m[1]))) problems.push(`README.md names ${m[1]}: no such file`);
  }
  assert.match(readme, /\]\(docs\/cli\.md\)/, "the README links to docs/cli.md");
  assert.doesNotMatch(
    readme,
    /CONTRACT\.md/,
    "the README cites the in-repo reference, not a file outside the repository",
  );
  assert.deepEqual(problems, []);
});
