// The node's WireGuard key pair: made once, the private key kept 0600 in the state dir (base64, as
// `wg genkey` writes it), never logged; the public key derived from it. Keys travel base64 (as
// users know them from `wg`) and go to the UAPI as hex.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { chmod, readFile, rename, stat, writeFile } from "node:fs/promises";

// PKCS#8 DER prefix of an X25519 private key: the raw 32 bytes follow.
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

export interface KeyPair {
  /** base64, 32 bytes. Secret. */
  readonly privateKey: string;
  /** base64, 32 bytes. */
  readonly publicKey: string;
  /** When the key file was written. */
  readonly createdAt: Date;
}

export function isWgKey(text: unknown): text is string {
  return typeof text === "string" && /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(text);
}

export function toHex(base64: string): string {
  return Buffer.from(base64, "base64").toString("hex");
}

export function fromHex(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(privateKey, "base64");
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: "der", type: "pkcs8" });
  const jwk = createPublicKey(key).export({ format: "jwk" });
  return Buffer.from(jwk.x as string, "base64url").toString("base64");
}

export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync("x25519");
  const jwk = privateKey.export({ format: "jwk" });
  return Buffer.from(jwk.d as string, "base64url").toString("base64");
}

/**
 * Loads the key pair from `file`, making it first when absent (or when `rotate`): written to a
 * temporary file 0600 and renamed, so a crash never leaves half a key. A file that holds no valid
 * key is an error naming it (never silently replaced: peers hold its public half).
 */
export async function loadOrCreateKey(file: string, rotate = false): Promise<KeyPair & { created: boolean }> {
  if (!rotate) {
    const text = await readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    if (text !== null) {
      const key = text.trim();
      if (!isWgKey(key))
        throw new Error(`${file} holds no WireGuard private key (32 bytes, base64): delete it to make a new one`);
      await chmod(file, 0o600);
      return { privateKey: key, publicKey: publicKeyOf(key), createdAt: (await stat(file)).mtime, created: false };
    }
  }
  const privateKey = generatePrivateKey();
  const tmp = `${file}.tmp`;
  await writeFile(tmp, privateKey + "\n", { mode: 0o600 });
  await rename(tmp, file);
  return { privateKey, publicKey: publicKeyOf(privateKey), createdAt: (await stat(file)).mtime, created: true };
}
