import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CniError } from "./errors.js";
import {
  compareVersions,
  requireVersionFor,
  selectConfListVersion,
  selectPluginVersion,
  SUPPORTED_VERSIONS,
  versionResult,
} from "./version.js";

const code = (fn: () => unknown): number => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CniError, `expected a CniError, got ${String(e)}`);
    return e.code;
  }
  assert.fail("expected an error");
};

describe("version negotiation", () => {
  test("weft speaks exactly 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0", () => {
    assert.deepEqual([...SUPPORTED_VERSIONS], ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
  });

  test("compareVersions orders numerically, not as strings", () => {
    assert.ok(compareVersions("0.10.0", "0.4.0") > 0);
    assert.ok(compareVersions("1.0.0", "0.4.0") > 0);
    assert.equal(compareVersions("1.1.0", "1.1.0"), 0);
  });

  test("a plugin config's cniVersion is used as given when supported", () => {
    for (const v of SUPPORTED_VERSIONS) assert.equal(selectPluginVersion(v), v);
    // The runtime inserted cniVersion; cniVersions does not override it.
    assert.equal(selectPluginVersion("1.0.0", ["1.0.0", "1.1.0"]), "1.0.0");
  });

  test("unsupported, malformed or missing versions are code 1", () => {
    for (const v of ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "latest", "1.0", ""])
      assert.equal(
        code(() => selectPluginVersion(v)),
        1,
        v,
      );
    assert.equal(
      code(() => selectPluginVersion(100)),
      1,
    );
    assert.equal(
      code(() => selectPluginVersion(undefined)),
      1,
    );
    assert.equal(
      code(() => selectPluginVersion(undefined, ["0.1.0", "9.9.9"])),
      1,
    );
  });

  test("without cniVersion, the highest supported entry of cniVersions wins", () => {
    assert.equal(selectPluginVersion(undefined, ["0.3.1", "1.1.0", "1.0.0", "2.0.0"]), "1.1.0");
  });

  test("a conflist picks the highest supported version among cniVersion and cniVersions", () => {
    assert.equal(selectConfListVersion("1.0.0", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]), "1.1.0");
    assert.equal(selectConfListVersion("1.0.0", ["0.3.1", "1.5.0"]), "1.0.0");
    assert.equal(selectConfListVersion("0.4.0"), "0.4.0");
    assert.equal(
      code(() => selectConfListVersion("0.2.0", ["0.1.0"])),
      1,
    );
  });

  test("CHECK needs 0.4.0, GC and STATUS need 1.1.0 (code 1 below that)", () => {
    for (const v of ["0.3.0", "0.3.1"] as const)
      assert.equal(
        code(() => requireVersionFor("CHECK", v)),
        1,
      );
    for (const v of ["0.4.0", "1.0.0", "1.1.0"] as const) requireVersionFor("CHECK", v);
    for (const cmd of ["GC", "STATUS"] as const) {
      for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] as const)
        assert.equal(
          code(() => requireVersionFor(cmd, v)),
          1,
          `${cmd} ${v}`,
        );
      requireVersionFor(cmd, "1.1.0");
    }
    for (const cmd of ["ADD", "DEL"] as const) for (const v of SUPPORTED_VERSIONS) requireVersionFor(cmd, v);
  });

  test("VERSION echoes the requested version, else 1.1.0", () => {
    assert.deepEqual(versionResult("0.4.0"), { cniVersion: "0.4.0", supportedVersions: [...SUPPORTED_VERSIONS] });
    assert.equal(versionResult(undefined).cniVersion, "1.1.0");
    assert.equal(versionResult({}).cniVersion, "1.1.0");
  });
});
