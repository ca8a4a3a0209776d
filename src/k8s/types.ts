// Kubernetes object shapes weft reads and stores: Namespace, Pod, NetworkPolicy (networking.k8s.io/v1).
// The zod schemas check structure only (types, required fields) and keep unknown fields, because
// real objects carry far more than weft uses. Semantic rules (names, CIDRs, selectors, ports)
// live in validation.ts, with Kubernetes-style field paths in every message.
import { z } from "zod";

const stringMap = z.record(z.string(), z.string());

export const ObjectMetaSchema = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

export const LabelSelectorRequirementSchema = z.object({
  key: z.string(),
  operator: z.string(),
  values: z.array(z.string()).optional(),
});
export type LabelSelectorRequirement = z.infer<typeof LabelSelectorRequirementSchema>;

export const LabelSelectorSchema = z.object({
  matchLabels: stringMap.optional(),
  matchExpressions: z.array(LabelSelectorRequirementSchema).optional(),
});
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

export const NamespaceSchema = z.looseObject({
  apiVersion: z.literal("v1").optional(),
  kind: z.literal("Namespace").optional(),
  metadata: ObjectMetaSchema,
  spec: z.looseObject({}).optional(),
  status: z.looseObject({ phase: z.string().optional() }).optional(),
});
export type Namespace = z.infer<typeof NamespaceSchema>;

export const ContainerPortSchema = z.looseObject({
  name: z.string().optional(),
  containerPort: z.number().int(),
  protocol: z.string().optional(),
  hostPort: z.number().int().optional(),
});
export type ContainerPort = z.infer<typeof ContainerPortSchema>;

export const ContainerSchema = z.looseObject({
  name: z.string(),
  image: z.string().optional(),
  ports: z.array(ContainerPortSchema).optional(),
});

const PodIPSchema = z.object({ ip: z.string() });

export const PodSchema = z.looseObject({
  apiVersion: z.literal("v1").optional(),
  kind: z.literal("Pod").optional(),
  metadata: ObjectMetaSchema,
  spec: z.looseObject({
    nodeName: z.string().optional(),
    hostNetwork: z.boolean().optional(),
    containers: z.array(ContainerSchema),
  }),
  status: z
    .looseObject({
      phase: z.string().optional(),
      podIP: z.string().optional(),
      podIPs: z.array(PodIPSchema).optional(),
      hostIP: z.string().optional(),
    })
    .optional(),
});
export type Pod = z.infer<typeof PodSchema>;

export const IPBlockSchema = z.object({
  cidr: z.string(),
  except: z.array(z.string()).optional(),
});
export type IPBlock = z.infer<typeof IPBlockSchema>;

export const NetworkPolicyPeerSchema = z.object({
  podSelector: LabelSelectorSchema.optional(),
  namespaceSelector: LabelSelectorSchema.optional(),
  ipBlock: IPBlockSchema.optional(),
});
export type NetworkPolicyPeer = z.infer<typeof NetworkPolicyPeerSchema>;

export const NetworkPolicyPortSchema = z.object({
  protocol: z.string().optional(),
  port: z.union([z.number().int(), z.string()]).optional(),
  endPort: z.number().int().optional(),
});
export type NetworkPolicyPort = z.infer<typeof NetworkPolicyPortSchema>;

export const NetworkPolicyIngressRuleSchema = z.object({
  from: z.array(NetworkPolicyPeerSchema).optional(),
  ports: z.array(NetworkPolicyPortSchema).optional(),
});
export type NetworkPolicyIngressRule = z.infer<typeof NetworkPolicyIngressRuleSchema>;

export const NetworkPolicyEgressRuleSchema = z.object({
  to: z.array(NetworkPolicyPeerSchema).optional(),
  ports: z.array(NetworkPolicyPortSchema).optional(),
});
export type NetworkPolicyEgressRule = z.infer<typeof NetworkPolicyEgressRuleSchema>;

export const NetworkPolicySpecSchema = z.object({
  // Go decodes a missing podSelector as the empty selector (all pods of the namespace).
  podSelector: LabelSelectorSchema.default({}),
  policyTypes: z.array(z.string()).optional(),
  ingress: z.array(NetworkPolicyIngressRuleSchema).optional(),
  egress: z.array(NetworkPolicyEgressRuleSchema).optional(),
});
export type NetworkPolicySpec = z.infer<typeof NetworkPolicySpecSchema>;

export const NetworkPolicySchema = z.looseObject({
  apiVersion: z.literal("networking.k8s.io/v1").optional(),
  kind: z.literal("NetworkPolicy").optional(),
  metadata: ObjectMetaSchema,
  spec: NetworkPolicySpecSchema,
});
export type NetworkPolicy = z.infer<typeof NetworkPolicySchema>;

export type Protocol = "TCP" | "UDP" | "SCTP";
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];
export type PolicyType = "Ingress" | "Egress";
