// The sizes and times every path of the agent protocol holds to, in one place: the plugin's stdin
// cap, the agent's frame and JSON-line caps and the native forwarder (built with these values by
// scripts/build-plugin.mjs) agree, so no path accepts what another refuses.

/** The network configuration a plugin call carries (stdin); far above any real config. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** The runtime's environment forwarded in a frame; a real one is a few KiB. */
export const MAX_ENV_BYTES = 256 * 1024;
/** One JSON-line request: a config's content plus the request's own fields. */
export const MAX_REQUEST_BYTES = MAX_CONFIG_BYTES + 64 * 1024;
/** One answer (an ipam-check report of a large node included); a runaway peer cannot make a client buffer more. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Open connections the agent serves at once; more are answered "try again later" and closed. */
export const MAX_CONNECTIONS = 256;
/** How long a client may take to send its whole request (idle or trickling alike). */
export const REQUEST_READ_TIMEOUT_MS = 10_000;
