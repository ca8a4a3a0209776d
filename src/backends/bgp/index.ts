export { BgpBackend, bgpSettings, type BgpSession } from "./backend.js";
export { DEFAULT_AS, renderBirdConfig, type BgpSettings } from "./render.js";
