// The encryption implementations by name (the cluster setting's encryption.type).
import type { EncryptionSettings } from "../store/types.js";
import { EncryptionError, type Encryption, type EncryptionName, type EncryptionOptions } from "./types.js";

export * from "./types.js";

type Factory = (options: EncryptionOptions) => Encryption;

/** One line per implementation (loaded on first use, so a node without encryption loads none). */
const FACTORIES: Partial<Record<EncryptionName, () => Promise<Factory>>> = {
  wireguard: async () => (await import("./wireguard/index.js")).createWireguard,
  ipsec: async () => (await import("./ipsec/index.js")).createIpsec,
};

/** The implementation the setting names; undefined for "none". */
export async function createEncryption(
  setting: EncryptionSettings,
  options: Omit<EncryptionOptions, "strict" | "nodeToNode">,
): Promise<Encryption | undefined> {
  if (setting.type === "none") return undefined;
  const load = FACTORIES[setting.type];
  if (!load) throw new EncryptionError(`encryption type ${setting.type} is not available in this build of weft`);
  return (await load())({ ...options, strict: setting.strict, nodeToNode: setting.nodeToNode });
}
