// WireGuard between nodes: wireguard-go (or kernel WireGuard) per node, one peer per other node.
import { EncryptionError, type Encryption, type EncryptionOptions } from "../types.js";

export function createWireguard(options: EncryptionOptions): Encryption {
  void options;
  throw new EncryptionError("wireguard: not implemented yet");
}
