// Peer writes through an injected PeerWriteChannel, in namespaces the test makes: netlink by
// default, iproute2 when the channel says so, and a netlink socket that cannot be opened is
// recorded and reported (never a silent switch).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createNetns, removeAllNetns, routes } from "../testlib/netns.js";
import { applyPeerWrites, PeerWriteChannel, type PeerWrite } from "./peer-writes.js";

after(removeAllNetns);

const PROTO = 230;
const route = (dst: string): PeerWrite => ({
  kind: "route-replace",
  route: { dst, via: "192.0.2.2", dev: "d0", onlink: false },
  protocol: PROTO,
});

async function nodeNs() {
  const ns = await createNetns("pw");
  const peer = await createNetns("pw");
  await ns.exec(["ip", "link", "add", "d0", "type", "veth", "peer", "name", "e0", "netns", peer.path]);
  await ns.exec(["ip", "link", "set", "d0", "up"]);
  await ns.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "d0"]);
  return ns;
}

for (const mode of ["netlink", "iproute"] as const) {
  test(`${mode} channel: peer routes are written through it, and it says which door it took`, async () => {
    const ns = await nodeNs();
    const errors: string[] = [];
    const channel = new PeerWriteChannel(mode, (r) => errors.push(r));
    const seen: string[] = [];
    const ctx = {
      netns: ns.path,
      peerWrites: channel,
      onCommand: (argv: readonly string[]) => seen.push(argv.join(" ")),
    };
    const failed = await applyPeerWrites(ctx, [route("10.244.1.0/24"), route("10.244.2.0/24")]);
    assert.deepEqual([...failed], []);
    // iproute2 takes both in one `ip -batch` process; netlink reports each write as the command it equals.
    assert.equal(seen.includes("ip -force -batch -"), mode === "iproute", seen.join("; "));
    assert.deepEqual(
      (await routes(ns, 4))
        .filter((r) => r.dst.startsWith("10.244."))
        .map((r) => r.dst)
        .sort(),
      ["10.244.1.0/24", "10.244.2.0/24"],
    );
    assert.equal(channel.effective, mode);
    assert.equal(channel.netlinkError, null);
    assert.deepEqual(errors, []);
  });
}

test("a netlink socket that cannot be opened is reported, not hidden", async () => {
  const errors: string[] = [];
  const channel = new PeerWriteChannel("netlink", (r) => errors.push(r));
  // A namespace that does not exist: netlink cannot open there (nor can iproute2 write there).
  const failed = await applyPeerWrites({ netns: "/run/netns/wt-gone-0000", peerWrites: channel }, [
    route("10.244.1.0/24"),
  ]);
  assert.equal(failed.size, 1, "the write is reported failed, not dropped");
  assert.match(
    channel.netlinkError ?? "",
    /^cannot open a netlink socket for peer writes \(.+\); writing them with iproute2$/,
  );
  assert.equal(channel.effective, "iproute");
  assert.deepEqual(errors, [channel.netlinkError]);
});
