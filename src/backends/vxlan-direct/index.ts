export { VxlanDirectBackend } from "./backend.js";
