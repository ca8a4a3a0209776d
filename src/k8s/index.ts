// Kubernetes object types, validation, defaulting and label selectors.
export * from "./types.js";
export * from "./validation.js";
export * from "./defaults.js";
export * from "./selector.js";
export * from "./selector-text.js";
