// A pod network namespace wired by hand the way the agent wires one (routed veth, no bridge):
// for kernel tests of the policy table that run without an agent.
import { createNetns, type TestNetns } from "./netns.js";

/** Makes a pod namespace behind host veth `ifname` in `node`, with v4/32 and v6/128. */
export async function wireRoutedPod(node: TestNetns, ifname: string, v4: string, v6: string): Promise<TestNetns> {
  const pod = await createNetns("pp");
  try {
    await wire(node, pod, ifname, v4, v6);
  } catch (e) {
    await pod.remove();
    throw e;
  }
  return pod;
}

async function wire(node: TestNetns, pod: TestNetns, ifname: string, v4: string, v6: string): Promise<void> {
  await node.exec(["ip", "link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", pod.name]);
  await node.exec(["ip", "link", "set", ifname, "up"]);
  await node.exec(["ip", "addr", "add", "169.254.1.1/32", "dev", ifname]);
  await node.exec(["ip", "-6", "addr", "add", "fe80::1/64", "dev", ifname, "nodad"]);
  await node.exec(["ip", "route", "add", `${v4}/32`, "dev", ifname]);
  await node.exec(["ip", "-6", "route", "add", `${v6}/128`, "dev", ifname]);
  await pod.exec(["ip", "link", "set", "eth0", "up"]);
  await pod.exec(["ip", "addr", "add", `${v4}/32`, "dev", "eth0"]);
  await pod.exec(["ip", "-6", "addr", "add", `${v6}/128`, "dev", "eth0", "nodad"]);
  await pod.exec(["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"]);
  await pod.exec(["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]);
  await pod.exec(["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"]);
}
