// weft's offline images (scripts/image.sh, src/image/) as the real runtimes take them: a private
// containerd 1.6 imports each archive under its own name and runs busybox, lab-pod and the weft
// CLI; podman 4.3 loads each into a temp storage; the CNI plugin from the image runs on the host
// (install-cni copies it there).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUSYBOX_IMAGE, LAB_POD_IMAGE, PAUSE_IMAGE, WEFT_REPO, type ImageList } from "../../image/build.js";
import { ContainerdSandbox } from "../../testlib/containerd.js";
import { createNetns, type TestNetns } from "../../testlib/netns.js";
import { PodmanSandbox } from "../../testlib/podman.js";
import { ROOT } from "../cni/fixture.js";
import { LAB_POD_ARGV, testImages } from "./fixture.js";

describe("offline images", () => {
  let list: ImageList;
  let ns: TestNetns;
  let ctd: ContainerdSandbox;

  before(async () => {
    list = await testImages();
    ns = await createNetns("ctd");
    ctd = await ContainerdSandbox.start({ netns: ns.path });
  });
  after(async () => {
    await ctd?.close();
    await ns?.remove();
  });

  test("the list names the four images, the weft tag is the commit, and a rebuild is a cache hit", async () => {
    const commit = spawnSync("git", ["-C", ROOT, "rev-parse", "--short=7", "HEAD"], { encoding: "utf8" }).stdout.trim();
    assert.deepEqual(
      list.images.map((i) => i.name),
      [`${WEFT_REPO}:${commit}`, LAB_POD_IMAGE, BUSYBOX_IMAGE, PAUSE_IMAGE],
    );
    for (const i of list.images) assert.ok(existsSync(i.archive), i.archive);
    const t0 = Date.now();
    const again = await testImages();
    assert.deepEqual(again, list, "same inputs, same archives");
    assert.ok(Date.now() - t0 < 5000, `an up-to-date rebuild took ${Date.now() - t0} ms`);
  });

  test("a cold build into an empty cache makes byte-identical images (reproducible)", async () => {
    const d = mkdtempSync(join(tmpdir(), "weft-img-cold-"));
    try {
      const cold = await testImages(d);
      assert.deepEqual(
        cold.images.map((i) => [i.name, i.digest, i.size]),
        list.images.map((i) => [i.name, i.digest, i.size]),
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("ctr images import names every image as built, and containerd unpacks it", async () => {
    for (const i of list.images) {
      const out = await ctd.ok(["images", "import", i.archive]);
      assert.match(out, new RegExp(`${i.name.replace(/[.]/g, "\\.")}`), out);
    }
    const ls = await ctd.ok(["images", "ls", "-q"]);
    assert.deepEqual(ls.split("\n").filter(Boolean).sort(), list.images.map((i) => i.name).sort());
    for (const i of list.images) {
      const check = await ctd.ok(["images", "check", `name==${i.name}`]);
      assert.match(check, /complete/, check);
    }
  });

  test("busybox runs under containerd", async () => {
    const r = await ctd.run(BUSYBOX_IMAGE, "bb", [
      "/bin/sh",
      "-c",
      "echo hello from $(busybox | head -1 | cut -d' ' -f1)",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "hello from BusyBox");
  });

  test("the weft image's CLI runs (weft --help, and the tools the agent calls are there)", async () => {
    const image = list.images[0].name;
    const help = await ctd.run(image, "weft-help", ["/usr/local/bin/weft", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: weft/);
    for (const argv of [
      ["nft", "--version"],
      ["ip", "-V"],
      ["tcpdump", "--version"],
      ["nsenter", "--version"],
    ]) {
      const r = await ctd.run(image, `tool-${argv[0]}`, argv);
      assert.equal(r.code, 0, `${argv.join(" ")} in the image: ${r.stderr}`);
    }
  });

  test("lab-pod serves its TCP and UDP ports (TCP accepts, UDP echoes)", async () => {
    const child = await ctd.start(LAB_POD_IMAGE, "labpod", LAB_POD_ARGV(["8080/TCP", "5353/UDP"]), ["--net-host"]);
    try {
      let tcp = "";
      for (let i = 0; i < 100 && !tcp.includes("ping"); i++) {
        if (i) await new Promise((r) => setTimeout(r, 100));
        tcp = (await ns.status(["timeout", "5", "socat", "-T2", "-", "TCP4:127.0.0.1:8080"], { input: "ping" })).stdout;
      }
      assert.equal(tcp, "ping", "TCP 8080 accepts (and echoes)");
      const udp = await ns.status(["timeout", "5", "socat", "-T2", "-", "UDP6:[::1]:5353"], { input: "nonce-1" });
      assert.equal(udp.stdout, "nonce-1", "UDP 5353 echoes");
    } finally {
      await ctd.stop("labpod", child);
    }
  });

  test("the image's CNI plugin runs on the host, outside any container", async () => {
    const d = mkdtempSync(join(tmpdir(), "weft-img-"));
    try {
      await ctd.ok(["images", "export", join(d, "x.tar"), list.images[0].name]);
      const layout = join(d, "layout");
      spawnSync("mkdir", [layout]);
      const x = spawnSync("tar", ["-C", layout, "-xf", join(d, "x.tar")]);
      assert.equal(x.status, 0);
      const rootfs = join(d, "rootfs");
      spawnSync("mkdir", [rootfs]);
      // The last layer holds the plugin binaries.
      const index = JSON.parse(spawnSync("cat", [join(layout, "index.json")], { encoding: "utf8" }).stdout) as {
        manifests: Array<{ digest: string }>;
      };
      const man = JSON.parse(
        spawnSync("cat", [join(layout, "blobs/sha256", index.manifests[0].digest.slice(7))], { encoding: "utf8" })
          .stdout,
      ) as { layers: Array<{ digest: string }> };
      const last = man.layers[man.layers.length - 1].digest.slice(7);
      assert.equal(spawnSync("tar", ["-C", rootfs, "-xzf", join(layout, "blobs/sha256", last)]).status, 0);
      for (const exe of ["weft-cni", "weft-cni-full"]) {
        const v = spawnSync(join(rootfs, "opt/weft/dist", exe), [], {
          env: { CNI_COMMAND: "VERSION" },
          input: '{"cniVersion":"1.0.0"}',
          encoding: "utf8",
        });
        assert.equal(v.status, 0, `${exe} VERSION: ${v.stderr}`);
        assert.ok((JSON.parse(v.stdout) as { supportedVersions: string[] }).supportedVersions.includes("1.0.0"));
      }
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("podman load takes every archive under its name", async () => {
    const pns = await createNetns("pm");
    const conf = mkdtempSync(join(tmpdir(), "weft-img-net-"));
    const pm = PodmanSandbox.create({ hostNetns: pns.path, netConfDir: conf, pluginDirs: ["/usr/lib/cni"] });
    try {
      for (const i of list.images) {
        const out = await pm.ok(["load", "-i", i.archive]);
        assert.match(out, new RegExp(`Loaded image.*${i.name.replace(/[.]/g, "\\.")}`), out);
      }
      const names = (await pm.ok(["images", "--format", "{{.Repository}}:{{.Tag}}"])).split("\n").filter(Boolean);
      assert.deepEqual(names.sort(), list.images.map((i) => i.name).sort());
      // The configs' entrypoints and default commands, as a kubelet would use them (ctr run replaces both).
      const help = await pm.podman(["run", "--rm", "--network", "none", list.images[0].name]);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /Usage: weft/, "the weft image's default command is weft --help");
      const bad = await pm.podman(["run", "--rm", "--network", "none", LAB_POD_IMAGE, "80/TCP", "bogus"]);
      assert.equal(bad.code, 2, `lab-pod with a bad port: ${bad.stdout}${bad.stderr}`);
      assert.match(bad.stderr, /lab-pod: "bogus" is not a port/, "arguments reach lab-pod's entrypoint");
    } finally {
      await pm.close();
      await pns.remove();
      rmSync(conf, { recursive: true, force: true });
    }
  });
});
