// Removes compiled files in dist/ whose source is gone (a moved or deleted src/**/*.ts): tsc never
// deletes outputs, and the test command runs every dist/**/*.test.js it finds.
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join, relative } from "node:path";

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)],
  );
if (existsSync("dist")) {
  for (const f of walk("dist")) {
    const m = /^(.*)\.js(\.map)?$/.exec(relative("dist", f));
    if (m && !existsSync(join("src", `${m[1]}.ts`))) rmSync(f);
  }
}
