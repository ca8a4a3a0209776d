export { HostGwBackend } from "./backend.js";
