// The tests run plugins through the same small CNI runtime the lab kubelet uses.
export * from "../lab/cni-runtime.js";
