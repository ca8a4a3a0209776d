// The shared encryption suite with IPsec (charon + kernel-libipsec here: this kernel has no ESP).
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encryptionSuite } from "../cases.js";
import { createIpsec, PSK_FILE, type IpsecEncryption } from "./index.js";

// One cluster key for every node of a suite cluster (the agent writes it from the store).
const psk = randomBytes(32).toString("hex");

encryptionSuite({
  title: "ipsec",
  create: (o) => {
    const file = join(o.stateDir, PSK_FILE);
    if (!existsSync(file)) writeFileSync(file, JSON.stringify({ generations: [{ id: 1, hex: psk }] }), { mode: 0o600 });
    return createIpsec(o);
  },
  overhead4: 100,
  daemonPid: (e) => (e as IpsecEncryption).daemonPid(),
});
