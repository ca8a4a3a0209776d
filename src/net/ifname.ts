// The one rule for Linux interface names, shared by the CNI front door (CNI_IFNAME) and the
// kernel layer (every name before it reaches netlink or `ip -batch`). It returns what is wrong,
// or null; each caller throws its own typed error with that text.

/**
 * Why name is not a usable interface name, or null when it is. Linux: 1-15 bytes (IFNAMSIZ - 1),
 * not "." or "..", no '/', ':', '%' or NUL. Beyond the kernel: no whitespace, quotes, '#' or
 * backslash, which `ip -batch` reads as word breaks, quoting, comments and escapes.
 */
export function ifnameProblem(name: string): string | null {
  if (typeof name !== "string" || name.length === 0) return "is empty";
  if (Buffer.byteLength(name, "utf8") > 15) return "is longer than 15 bytes";
  if (name === "." || name === "..") return "is not allowed";
  if (/[/:\0]/.test(name)) return "contains '/', ':' or NUL";
  if (/[\s"'#\\]/.test(name)) return "contains whitespace, a quote, '#' or a backslash";
  // The kernel takes a name with '%' as a template ("eth%d" becomes eth0): not the name asked for.
  if (name.includes("%")) return "contains '%' (the kernel would take it as a name template: eth%d becomes eth0)";
  return null;
}
