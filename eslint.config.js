// weft's lint: typescript-eslint's recommended rules, a line-length limit, and the layering of
// docs/architecture.md as import rules, so an upward import fails `npm run lint` (and the tests).
//
// Layering: eslint-plugin-import's import/no-restricted-paths, not dependency-cruiser: one tool,
// one config and one run (editors show it as they show any lint error), and the rule resolves the
// `.js` specifiers to the `.ts` sources through eslint-import-resolver-typescript. What
// dependency-cruiser would add (a folder that no rule names is an error) is the check below: every
// folder under src/ must be given a layer (or be test support) here, or the lint does not start.
import { readdirSync } from "node:fs";
import js from "@eslint/js";
import importPlugin from "eslint-plugin-import";
import tseslint from "typescript-eslint";

/** Top to bottom. A folder may import its own layer and the layers below it, never above. */
const LAYERS = [
  ["cli", "lab", "image"], // commands, the lab (`weft lab` ships) and the image builder: wire everything together
  ["agent", "policy-agent"], // the node agent and its policy enforcement
  ["plugin", "backends", "encryption", "policy"], // CNI plugin executable, pod-network backends, encryption between nodes, policy compiler
  ["store", "ipam", "cni", "k8s", "agent-api", "cni-install"], // state, addresses, CNI types, Kubernetes types, agent protocol, CNI install
  ["kernel"], // the only door to netlink, iproute2 and nft
  ["net"], // pure IP/CIDR values
];

/** Test support: may import anything; production code never imports it. */
const TEST_FOLDERS = ["testlib", "e2e"];
const TEST_FILES = ["src/**/*.test.ts", "src/**/cases.ts", "src/testlib/**", "src/e2e/**", "src/backends/testing/**"];

const layered = LAYERS.flat();
const unassigned = readdirSync(new URL("./src/", import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory() && !layered.includes(d.name) && !TEST_FOLDERS.includes(d.name))
  .map((d) => `src/${d.name}/`);
if (unassigned.length) {
  throw new Error(
    `eslint.config.js: ${unassigned.join(", ")} has no layer: add it to LAYERS (or TEST_FOLDERS) and to docs/architecture.md`,
  );
}

const src = (folder) => `./src/${folder}`;
const zones = [
  // Layer i never imports a folder of a layer above it.
  ...LAYERS.flatMap((layer, i) =>
    layer.map((folder) => ({
      target: src(folder),
      from: LAYERS.slice(0, i).flat().map(src),
      message: `src/${folder}/ sits below these folders (docs/architecture.md): move the shared code down, or pass it in.`,
    })),
  ),
  // Within the top layer: the CLI calls the lab, never the other way (what both need goes down).
  {
    target: src("lab"),
    from: [src("cli")],
    message: "src/lab/ is called by src/cli/, not the other way: move what both need to a lower layer.",
  },
  // Production code never imports test support.
  {
    target: "./src",
    from: [...TEST_FOLDERS.map(src), "./src/backends/testing"],
    message: "production code does not import test support (src/testlib/, e2e, *.test.ts, case suites).",
  },
  {
    target: "./src",
    from: ["./src/**/*.test.ts", "./src/**/cases.ts"],
    message: "production code does not import test files or case suites.",
  },
];

export default tseslint.config(
  { ignores: ["dist/**", "dist-bench/**", "node_modules/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: {
        process: "readonly",
        console: "readonly",
        URL: "readonly",
        Buffer: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        setImmediate: "readonly",
      },
    },
    rules: {
      // Prettier wraps code at 120; what it cannot wrap (long strings, URLs) may run longer.
      "max-len": [
        "error",
        {
          code: 160,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreUrls: true,
          ignoreRegExpLiterals: true,
          ignoreComments: true,
        },
      ],
      // A leading underscore marks a value left out on purpose (`const { a: _a, ...rest } = x`).
      "@typescript-eslint/no-unused-vars": [
        "error",
        {
          argsIgnorePattern: "^_",
          varsIgnorePattern: "^_",
          destructuredArrayIgnorePattern: "^_",
          ignoreRestSiblings: true,
        },
      ],
    },
  },
  {
    // Tests read `ip -j` JSON loosely; `any` is kept out of module boundaries, not out of assertions.
    files: ["src/**/*.test.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  {
    files: ["src/**/*.ts"],
    ignores: TEST_FILES,
    plugins: { import: importPlugin },
    settings: { "import/resolver": { typescript: { project: "./tsconfig.json" } } },
    rules: { "import/no-restricted-paths": ["error", { basePath: import.meta.dirname, zones }] },
  },
);
