// The shared encryption suite with WireGuard (wireguard-go here: this kernel has no WireGuard).
import { findWireguardGo } from "../../kernel/wireguard.js";
import { encryptionSuite } from "../cases.js";
import { WireguardEncryption } from "./index.js";

encryptionSuite({
  title: "wireguard",
  create: (o) => new WireguardEncryption(o),
  overhead4: 60,
  daemonPid: async (e) =>
    (await findWireguardGo((e as WireguardEncryption).pidfile, (e as WireguardEncryption).device)) ?? undefined,
});
