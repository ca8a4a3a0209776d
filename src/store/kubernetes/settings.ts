// The cluster settings as a create-only ConfigMap (weft-system/weft-cluster by layout.ts).
import {
  ConflictError,
  InvalidError,
  NotInitializedError,
  type ClusterSettings,
  type ClusterSettingsInput,
  type EncryptionSettingsInput,
} from "../types.js";
import { normalizeEncryption, normalizeSettings, stableStringify } from "../validate.js";
import { getOrUndefined, isApiError, type KubeClient } from "./client.js";
import { SETTINGS_KEY, SETTINGS_NAME, SETTINGS_NAMESPACE, settingsPath } from "./layout.js";

export async function initCluster(
  client: KubeClient,
  input: ClusterSettingsInput,
): Promise<{ settings: ClusterSettings; created: boolean }> {
  const settings = normalizeSettings(input);
  try {
    await client.request("POST", settingsPath(), {
      body: {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: {
          name: SETTINGS_NAME,
          namespace: SETTINGS_NAMESPACE,
          labels: { "app.kubernetes.io/managed-by": "weft" },
        },
        data: { [SETTINGS_KEY]: JSON.stringify(settings) },
      },
    });
    return { settings, created: true };
  } catch (err) {
    if (!isApiError(err, 409)) throw err;
  }
  const existing = await getClusterSettings(client);
  if (existing && stableStringify(existing) === stableStringify(settings))
    return { settings: existing, created: false };
  throw new ConflictError(
    "AlreadyInitialized",
    `the cluster in ${client.description} is already initialized with cluster CIDRs ${existing?.clusterCIDRs.join(",")}, backend ${existing?.backend}` +
      `${existing?.mtu ? `, MTU ${existing.mtu}` : ""}, node subnets /${existing?.nodeSubnetPrefix.v4} (IPv4) and /${existing?.nodeSubnetPrefix.v6} (IPv6) ` +
      `(ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME}); settings cannot change under running nodes: re-run with the same settings, or start over with a new cluster`,
  );
}

export async function getClusterSettings(client: KubeClient): Promise<ClusterSettings | undefined> {
  const cm = await getOrUndefined(client, settingsPath(SETTINGS_NAME));
  const text = (cm?.data as Record<string, string> | undefined)?.[SETTINGS_KEY];
  if (!cm) return undefined;
  if (!text)
    throw new InvalidError(
      `ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} in ${client.description} has no ${SETTINGS_KEY}: it was not written by weft; delete it and run \`weft cluster init\` again`,
    );
  let parsed: ClusterSettingsInput;
  try {
    parsed = JSON.parse(text) as ClusterSettingsInput;
  } catch {
    throw new InvalidError(
      `ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} in ${client.description} holds no valid JSON in ${SETTINGS_KEY}: restore it, or delete it and run \`weft cluster init\` again`,
    );
  }
  // The ConfigMap may be written by hand (deploy/weft.yaml): validate it and fill in the defaults.
  try {
    return normalizeSettings(parsed);
  } catch (e) {
    throw new InvalidError(
      `ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} key ${SETTINGS_KEY}: ${(e as Error).message}`,
    );
  }
}

/**
 * Changes only the encryption field of the settings ConfigMap, guarded by its resourceVersion (a
 * concurrent edit of another field is kept, never overwritten).
 */
export async function setEncryption(
  client: KubeClient,
  input: EncryptionSettingsInput,
): Promise<{ settings: ClusterSettings; changed: boolean }> {
  const encryption = normalizeEncryption(input);
  for (let attempt = 0; attempt < 10; attempt++) {
    const cm = await getOrUndefined(client, settingsPath(SETTINGS_NAME));
    const current = await getClusterSettings(client);
    if (!cm || !current) throw new NotInitializedError(client.description);
    if (stableStringify(current.encryption) === stableStringify(encryption))
      return { settings: current, changed: false };
    const settings = { ...current, encryption };
    const data = {
      ...((cm.data as Record<string, string> | undefined) ?? {}),
      [SETTINGS_KEY]: JSON.stringify(settings),
    };
    try {
      await client.request("PUT", settingsPath(SETTINGS_NAME), { body: { ...cm, data } });
      return { settings, changed: true };
    } catch (err) {
      if (!isApiError(err, 409)) throw err;
    }
  }
  throw new ConflictError("Contention", `ConfigMap ${SETTINGS_NAMESPACE}/${SETTINGS_NAME} kept changing; retry`);
}
