export { VxlanBackend } from "./backend.js";
export { vtepMac, vxlanOverhead } from "./config.js";
