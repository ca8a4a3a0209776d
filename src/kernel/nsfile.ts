// Is a path a namespace file? A bind-mounted or /proc namespace file lives on nsfs, the one
// filesystem all namespace files share, so comparing its device with our own netns file tells.
import { statSync } from "node:fs";

export type NsFileState = "ok" | "missing" | "not-a-namespace";

export function netnsFileState(path: string): NsFileState {
  let st;
  try { st = statSync(path); } catch { return "missing"; }
  const own = statSync("/proc/self/ns/net");
  return st.dev === own.dev ? "ok" : "not-a-namespace";
}
