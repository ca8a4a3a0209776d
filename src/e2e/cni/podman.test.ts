// podman 4.3 (CNI backend) as the container runtime on a weft network: it reads the conflist
// install-cni wrote, runs the real plugin (and portmap) for each container, and DELs on rm.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PodmanSandbox, podmanSkipReason } from "../../testlib/podman.js";
import { e2eSkipReason, Host, inCidr4, sleep, tag } from "./fixture.js";

const skip = e2eSkipReason() ?? (await podmanSkipReason()) ?? false;

describe("podman on a weft network", { skip }, () => {
  let h: Host;
  let pm: PodmanSandbox;
  const net = `weft-${tag()}`; // unique: libcni's cache in /var/lib/cni is keyed by network name
  before(async () => {
    h = await Host.open({ podCidr: "10.250.0.0/24", name: net });
    pm = PodmanSandbox.create({ hostNetns: h.ns, netConfDir: h.confDir, pluginDirs: h.cniPath });
    h.defer(() => pm.close());
    await pm.importBusybox();
  });
  after(async () => {
    await h?.close();
  });

  test("podman sees the installed network (conflist cniVersion 1.0.0)", async () => {
    const names = (await pm.ok(["network", "ls", "--format", "{{.Name}}"])).split("\n");
    assert.ok(names.includes(net), `podman network ls shows ${names.join(", ")}`);
  });

  test("containers get weft addresses, reach each other, and podman rm releases the address", async () => {
    const linksBefore = await h.hostLinks();
    const base = (await h.ipamCheck()).report.allocations;
    await pm.runDetached("c1", net, ["sleep", "3600"], ["--cap-add", "NET_RAW"]);
    await pm.runDetached("c2", net, ["httpd", "-f", "-vv", "-p", "8080", "-h", "/www"]);
    const ip1 = await pm.address("c1", net);
    const ip2 = await pm.address("c2", net);
    assert.notEqual(ip1, ip2);
    for (const ip of [ip1, ip2]) assert.ok(inCidr4(ip, h.podCidr), `${ip} is not from weft's pod CIDR ${h.podCidr}`);
    const chk = await h.ipamCheck();
    assert.equal(chk.report.allocations, base + 2, "the agent allocated both addresses");
    assert.equal(chk.code, 0);
    const inside = await pm.exec("c1", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert.match(
      inside.stdout,
      new RegExp(`inet ${ip1.replace(/\./g, "\\.")}/`),
      "the address is on the container's eth0",
    );

    const ping = await pm.exec("c1", ["ping", "-c", "1", "-W", "2", ip2]);
    assert.equal(ping.code, 0, `c1 cannot ping c2: ${ping.stdout}${ping.stderr}`);
    // TCP to c2's httpd with busybox nc (busybox-static's wget crashes resolving in a bare image).
    let reply = "";
    for (let i = 0; i < 20 && !reply.includes("200 OK"); i++) {
      if (i) await sleep(250); // httpd may still be starting
      reply = (await pm.podman(["exec", "-i", "c1", "nc", "-w", "5", ip2, "8080"], "GET /index.html HTTP/1.0\r\n\r\n"))
        .stdout;
    }
    assert.match(reply, /^HTTP\/1\.[01] 200 OK/, "c1 -> c2:8080 over TCP");
    assert.ok(reply.endsWith("hello from a weft pod\n"), reply);
    // c2 saw c1's own address: pod to pod without NAT.
    assert.match(
      (await pm.podman(["logs", "c2"])).stderr,
      new RegExp(`\\[(::ffff:)?${ip1.replace(/\./g, "\\.")}\\]:\\d+: url:/index.html`),
    );

    await pm.ok(["rm", "--force", "--time", "0", "c2"]);
    assert.equal((await h.ipamCheck()).report.allocations, base + 1, "podman rm c2 released its address");
    const ping2 = await pm.exec("c1", ["ping", "-c", "1", "-W", "1", ip2]);
    assert.notEqual(ping2.code, 0, "c2's address no longer answers");
    await pm.ok(["rm", "--force", "--time", "0", "c1"]);
    const end = await h.ipamCheck();
    assert.equal(end.code, 0, JSON.stringify(end.report));
    assert.equal(end.report.allocations, base);
    assert.deepEqual(await h.hostLinks(), linksBefore, "no host-side links left");
  });
});
