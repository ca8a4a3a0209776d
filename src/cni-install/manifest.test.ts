// deploy/weft.yaml, the manifest users apply: what a careless edit could break is checked here
// (a DaemonSet that does not tolerate a NotReady node, a conflist dir the runtime does not read,
// a flag the agent does not have, a probe on the wrong port, privileges beyond the named ones).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { normalizeSettings } from "../store/validate.js";
import type { ClusterSettingsInput } from "../store/types.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(root, "dist", "cli", "main.js");

/**
 * Agent flags the manifest passes that another change adds to `weft agent` (src/cli/agent.ts:
 * --config FILE, --health-port N); they are accepted here only until `weft agent --help` lists
 * them. Empty this list once it does.
 */
const PENDING_AGENT_FLAGS = new Set<string>();

type Obj = Record<string, any>;

const docs: Obj[] = parseAllDocuments(readFileSync(join(root, "deploy", "weft.yaml"), "utf8")).map((d) => {
  assert.deepEqual(d.errors, [], "deploy/weft.yaml parses");
  return d.toJS() as Obj;
});
const one = (kind: string, name: string): Obj => {
  const found = docs.filter((d) => d.kind === kind && d.metadata?.name === name);
  assert.equal(found.length, 1, `exactly one ${kind} ${name}`);
  return found[0];
};
const ds = one("DaemonSet", "weft");
const pod = ds.spec.template.spec as Obj;
const init = (pod.initContainers as Obj[]).find((c) => c.name === "install-cni")!;
const agent = (pod.containers as Obj[]).find((c) => c.name === "weft")!;
const flagValue = (cmd: string[], flag: string): string | undefined => {
  const i = cmd.indexOf(flag);
  return i >= 0 ? cmd[i + 1] : undefined;
};
/** Where a container path comes from on the host (hostPath volumes only). */
const hostPathOf = (c: Obj, mountPath: string): string | undefined => {
  const m = (c.volumeMounts as Obj[]).find((v) => v.mountPath === mountPath);
  const vol = m && (pod.volumes as Obj[]).find((v) => v.name === m.name);
  return vol?.hostPath?.path as string | undefined;
};

test("every object is in kube-system (or cluster-scoped) and named weft; RBAC binds the ServiceAccount", () => {
  for (const d of docs) {
    if (!["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"].includes(d.kind as string))
      assert.equal(d.metadata.namespace, "kube-system", `${d.kind} ${d.metadata.name}`);
  }
  one("ServiceAccount", "weft");
  const role = one("ClusterRole", "weft");
  const binding = one("ClusterRoleBinding", "weft");
  assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "weft" });
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: "weft", namespace: "kube-system" }]);
  // Least privilege: no wildcard, never secrets, never the kubelet's node Leases.
  const rules = [...(role.rules as Obj[]), ...docs.filter((d) => d.kind === "Role").flatMap((r) => r.rules as Obj[])];
  for (const r of rules) {
    for (const f of ["apiGroups", "resources", "verbs"]) assert.ok(!(r[f] as string[]).includes("*"), `no * in ${f}`);
    assert.ok(!(r.resources as string[]).includes("secrets"), "weft reads no secrets");
  }
  for (const rb of docs.filter((d) => d.kind === "RoleBinding"))
    assert.deepEqual(rb.subjects, [{ kind: "ServiceAccount", name: "weft", namespace: "kube-system" }]);
  assert.equal(pod.serviceAccountName, "weft");
});

test("the ConfigMap holds valid cluster settings (net-conf.json) and the agent's config file", () => {
  const cm = one("ConfigMap", "weft-config");
  const settings = JSON.parse(cm.data["settings.json"] as string) as ClusterSettingsInput;
  const n = normalizeSettings(settings);
  assert.equal(n.backend, "vxlan");
  assert.equal(n.podCIDRSource, "node");
  assert.equal(n.ipMasq, true);
  assert.ok(n.clusterCIDRs.length >= 1);
  const configPath = flagValue(agent.command as string[], "--config")!;
  const mount = (agent.volumeMounts as Obj[]).find((m) => m.mountPath === dirname(configPath))!;
  const vol = (pod.volumes as Obj[]).find((v) => v.name === mount.name)!;
  assert.equal(vol.configMap.name, "weft-config");
  const key = (vol.configMap.items as Obj[]).find((i) => i.path === configPath.slice(dirname(configPath).length + 1))!;
  assert.doesNotThrow(() => JSON.parse(cm.data[key.key as string] as string), "the agent config file is JSON");
});

test("the DaemonSet: host network, every node, critical, rolling one at a time, short grace", () => {
  assert.equal(ds.metadata.namespace, "kube-system");
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, "system-node-critical");
  assert.ok(
    (pod.tolerations as Obj[]).some((t) => t.operator === "Exists" && !t.key && !t.effect),
    "tolerates every taint (a NotReady node has one until weft runs)",
  );
  assert.deepEqual(ds.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
  assert.ok((pod.terminationGracePeriodSeconds as number) <= 10);
  assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  const images = [init, agent].map((c) => c.image as string);
  assert.equal(new Set(images).size, 1, "init and agent run the same image");
  assert.match(images[0], /^localhost\/weft\/weft:[A-Za-z0-9_.-]+$/);
  for (const c of [init, agent]) assert.equal(c.imagePullPolicy, "IfNotPresent");
});

test("the init container installs into the host's CNI dirs and prepares the agent's socket dir", () => {
  const cmd = init.command as string[];
  assert.deepEqual(cmd.slice(0, 2), ["weft", "install-cni"]);
  assert.equal(hostPathOf(init, flagValue(cmd, "--bin-dir")!), "/opt/cni/bin");
  assert.equal(hostPathOf(init, flagValue(cmd, "--conf-dir")!), "/etc/cni/net.d");
  assert.ok(cmd.includes("--prepare-socket-dir"), "the kubelet makes hostPaths 0755; the agent needs 0700");
  const socket = flagValue(cmd, "--socket")!;
  assert.equal(socket, flagValue(agent.command as string[], "--socket"), "the conflist names the agent's socket");
  assert.equal(hostPathOf(init, dirname(socket)), hostPathOf(agent, dirname(socket)));
  assert.ok(!init.securityContext?.privileged);
});

test("the agent: its node from the downward API, real node, kubernetes store, probes on its health port", () => {
  const cmd = agent.command as string[];
  assert.deepEqual(cmd.slice(0, 2), ["weft", "agent"]);
  assert.equal(flagValue(cmd, "--store"), "kubernetes");
  assert.equal(flagValue(cmd, "--node"), "$(NODE_NAME)");
  assert.ok(cmd.includes("--real-node"));
  const nodeEnv = (agent.env as Obj[]).find((e) => e.name === "NODE_NAME")!;
  assert.equal(nodeEnv.valueFrom.fieldRef.fieldPath, "spec.nodeName");
  const port = Number(flagValue(cmd, "--health-port"));
  assert.ok(Number.isInteger(port) && port > 0);
  assert.deepEqual(agent.livenessProbe.httpGet, { host: "127.0.0.1", path: "/healthz", port });
  assert.deepEqual(agent.readinessProbe.httpGet, { host: "127.0.0.1", path: "/readyz", port });
  assert.equal(hostPathOf(agent, flagValue(cmd, "--state-dir")!), "/var/lib/weft");
  assert.equal(hostPathOf(agent, "/run/weft"), "/run/weft");
});

test("least privilege: not privileged, every capability dropped but NET_ADMIN, SYS_ADMIN and SETGID (the deny log's tcpdump); /run/netns sees later mounts", () => {
  const sc = agent.securityContext as Obj;
  assert.equal(sc.privileged, false);
  assert.deepEqual(sc.capabilities.drop, ["ALL"]);
  assert.deepEqual([...(sc.capabilities.add as string[])].sort(), ["NET_ADMIN", "SETGID", "SYS_ADMIN"]);
  assert.deepEqual(init.securityContext.capabilities, { drop: ["ALL"] });
  const netns = (agent.volumeMounts as Obj[]).find((m) => m.mountPath === "/run/netns")!;
  assert.equal(netns.mountPropagation, "HostToContainer");
  assert.equal(hostPathOf(agent, "/run/netns"), "/run/netns");
  // runc refuses any mount inside /proc ("cannot be mounted because it is inside /proc", seen on a
  // real containerd): the host's net sysctls come in elsewhere and the agent is told where.
  for (const c of [agent, init])
    for (const m of (c.volumeMounts ?? []) as Obj[])
      assert.ok(!String(m.mountPath).startsWith("/proc"), `${c.name} mounts ${m.mountPath} inside /proc`);
  const sysDir = (agent.env as Obj[]).find((e) => e.name === "WEFT_PROC_SYS_NET")?.value as string;
  assert.equal(hostPathOf(agent, sysDir), "/proc/sys/net");
  // Nothing mounted Bidirectional (that would leak the container's mounts to the host).
  for (const c of [init, agent])
    for (const m of c.volumeMounts as Obj[]) assert.notEqual(m.mountPropagation, "Bidirectional");
});

test("every flag the manifest passes exists in `weft agent --help` / `weft install-cni --help`", () => {
  const help = (cmd: string) =>
    new Set(execFileSync(process.execPath, [CLI, cmd, "--help"], { encoding: "utf8" }).match(/--[a-z][a-z0-9-]*/g));
  const check = (c: Obj, sub: string, pending: Set<string>) => {
    const known = help(sub);
    for (const flag of (c.command as string[]).filter((a) => a.startsWith("--"))) {
      if (known.has(flag)) continue;
      assert.ok(pending.has(flag), `weft ${sub} has no ${flag} (deploy/weft.yaml passes it)`);
    }
  };
  check(init, "install-cni", new Set());
  check(agent, "agent", PENDING_AGENT_FLAGS);
});
