// lab-pod's arguments: pod-spec style "PORT/PROTOCOL" strings, checked before anything listens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_CONTROL, parseLabPodArgs, parsePort } from "./lab-pod.js";

test("ports are PORT/PROTOCOL, protocol in any case", () => {
  assert.deepEqual(parseLabPodArgs(["80/TCP", "53/udp", "9/SCTP"]), {
    control: DEFAULT_CONTROL,
    ports: [
      { port: 80, protocol: "TCP" },
      { port: 53, protocol: "UDP" },
      { port: 9, protocol: "SCTP" },
    ],
  });
  assert.deepEqual(parseLabPodArgs(["--control", "/run/x.sock"]), { control: "/run/x.sock", ports: [] });
});

test("bad ports are refused with what was wrong", () => {
  for (const bad of ["80", "0/TCP", "65536/TCP", "80/ICMP", "x/TCP", "80/TCP;rm", " 80/TCP"])
    assert.throws(() => parsePort(bad), new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}" is not a port`));
  assert.throws(() => parseLabPodArgs(["80/TCP", "80/tcp"]), /port 80\/TCP is given twice/);
  assert.throws(() => parseLabPodArgs(["--bogus"]), /bogus/);
});
