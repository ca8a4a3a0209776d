// weft chained with the reference meta plugins (Debian containernetworking-plugins 1.1.1):
// portmap, bandwidth and tuning each take weft's result as prevResult, as under a real runtime,
// and a hostPort mapping carries traffic from outside the host netns to a server in the pod.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../kernel/exec.js";
import {
  addChain,
  checkChain,
  delChain,
  REFERENCE_PLUGIN_DIR,
  resultAddresses,
  type ConflistJson,
} from "../../testlib/plugin.js";
import { e2eSkipReason, Host, k8sArgs, startEchoServer, tcpEcho } from "./fixture.js";

const META = ["portmap", "bandwidth", "tuning"];
const skip =
  e2eSkipReason() ??
  (META.some((p) => !existsSync(join(REFERENCE_PLUGIN_DIR, p)))
    ? `needs ${META.join(", ")} in ${REFERENCE_PLUGIN_DIR}`
    : false);

// Documentation addresses (RFC 5737): a private link between the host netns and a client netns.
const HOST_IP = "192.0.2.1";
const CLIENT_IP = "192.0.2.2";
const HOST_PORT = 18080;
const POD_PORT = 8080;

describe("chaining weft + portmap + bandwidth + tuning", { skip }, () => {
  let h: Host;
  let client: string;
  before(async () => {
    h = await Host.open({ podCidr: "10.248.0.0/24" });
    client = (await h.pod("cl")).path;
    // The "outside world": a veth between the client netns and the host netns.
    await run(["ip", "link", "add", "wt-out", "type", "veth", "peer", "name", "wt-in", "netns", client], {
      netns: h.ns,
    });
    await run(["ip", "addr", "add", `${HOST_IP}/24`, "dev", "wt-out"], { netns: h.ns });
    await run(["ip", "link", "set", "wt-out", "up"], { netns: h.ns });
    await run(["ip", "addr", "add", `${CLIENT_IP}/24`, "dev", "wt-in"], { netns: client });
    await run(["ip", "link", "set", "wt-in", "up"], { netns: client });
  });
  after(async () => {
    await h?.close();
  });

  test("each plugin accepts weft's result; hostPort reaches the pod; DEL removes every trace", async () => {
    const installed = h.conflist();
    assert.deepEqual(
      installed.plugins.map((p) => p.type),
      ["weft", "portmap"],
      "install-cni's default chain",
    );
    const list: ConflistJson = {
      ...installed,
      plugins: [
        ...installed.plugins,
        { type: "bandwidth", capabilities: { bandwidth: true } },
        { type: "tuning", sysctl: { "net.ipv4.conf.eth0.arp_notify": "1" } },
      ],
    };
    const pod = await h.pod("ch");
    const at = {
      containerId: "chained-pod",
      netns: pod.path,
      ifname: "eth0",
      args: k8sArgs("chained-pod"),
      capabilityArgs: {
        portMappings: [{ hostPort: HOST_PORT, containerPort: POD_PORT, protocol: "tcp" }],
        bandwidth: {
          ingressRate: 100_000_000,
          ingressBurst: 10_000_000,
          egressRate: 100_000_000,
          egressBurst: 10_000_000,
        },
      },
    };
    const opts = { path: h.cniPath, runIn: h.ns };
    const add = await addChain(list, at, opts);
    for (const s of add.steps) assert.equal(s.out.code, 0, `${s.type} ADD: ${s.out.stdout}${s.out.stderr}`);
    assert.ok(add.ok);
    const [podIp] = resultAddresses(add.result);
    assert.ok(podIp, "the chain's final result still carries weft's address");
    assert.equal((add.result as { cniVersion: string }).cniVersion, list.cniVersion);

    // tuning ran in the pod; bandwidth shaped the host side of the pod's link (it needs the host
    // interface in weft's result to find it).
    const sysctl = await run(["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"], { netns: pod.path });
    assert.equal(sysctl.trim(), "1");
    const qdiscs = await run(["tc", "qdisc", "show"], { netns: h.ns });
    assert.match(qdiscs, /tbf/, "bandwidth installed its token-bucket qdisc on the host side");

    const server = await startEchoServer(pod.path, POD_PORT);
    try {
      assert.equal(await tcpEcho(client, HOST_IP, HOST_PORT, "via hostPort\n"), "via hostPort\n", "from another netns");
      assert.equal(
        await tcpEcho(h.ns, HOST_IP, HOST_PORT, "from the host\n"),
        "from the host\n",
        "from inside the host netns",
      );
    } finally {
      await server.stop();
    }

    // CHECK through the chain. portmap 1.1.1's CHECK fails on IPv4-only pods whatever plugin
    // precedes it (containernetworking/plugins#819, fixed upstream later), so it is left out here.
    const noPortmap: ConflistJson = { ...list, plugins: list.plugins.filter((p) => p.type !== "portmap") };
    const chk = await checkChain(noPortmap, at, add.result, opts);
    for (const s of chk.steps) assert.equal(s.out.code, 0, `${s.type} CHECK: ${s.out.stdout}${s.out.stderr}`);

    const del = await delChain(list, at, add.result, opts);
    for (const s of del.steps) assert.equal(s.out.code, 0, `${s.type} DEL: ${s.out.stdout}${s.out.stderr}`);
    assert.equal(await tcpEcho(client, HOST_IP, HOST_PORT, "gone?\n"), "", "hostPort closed after DEL");
    const nat = await run(["iptables-save", "-t", "nat"], { netns: h.ns });
    assert.doesNotMatch(nat, new RegExp(`--dport ${HOST_PORT}\\b`), "portmap's DNAT rule removed");
    assert.doesNotMatch(await run(["tc", "qdisc", "show"], { netns: h.ns }), /tbf/, "bandwidth's qdisc removed");
    const end = await h.ipamCheck();
    assert.equal(end.code, 0);
    assert.equal(end.report.allocations, 0);
    assert.ok(readFileSync(join(h.confDir, "10-weft.conflist"), "utf8").includes("portmap"));
  });
});
