// The few libc calls netlink needs, through koffi (an FFI whose binaries ship in its npm
// package, so there is nothing to compile). Loaded on first use: importing this module costs
// nothing on machines or code paths that never open a netlink socket.
import { createRequire } from "node:module";
import type * as KoffiNs from "koffi";

type Koffi = typeof KoffiNs;
type Fn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  /** len: a 4-byte Buffer holding the size of val, updated by the call. */
  getsockopt(fd: number, level: number, name: number, val: Buffer, len: Buffer): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  /** send() on one of koffi's worker threads; resolves with its return value. */
  sendAsync(fd: number, buf: Buffer, len: number, flags: number): Promise<number>;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  close(fd: number): number;
  setns(fd: number, nstype: number): number;
  /** errno of the last synchronous call on this thread. */
  errno(): number;
  strerror(errno: number): string;
}

let cached: Libc | undefined;

export function libc(): Libc {
  if (cached) return cached;
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const lib = koffi.load("libc.so.6");
  const f = (decl: string) => lib.func(decl) as unknown as Fn;
  const socket = f("int socket(int domain, int type, int protocol)");
  const bind = f("int bind(int fd, const void *addr, uint32_t len)");
  const setsockopt = f("int setsockopt(int fd, int level, int name, const void *val, uint32_t len)");
  const getsockopt = f("int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ void *len)");
  const send = f("intptr_t send(int fd, const void *buf, size_t len, int flags)");
  // _Out_: koffi hands the Buffer's own memory to recv, which fills it.
  const recv = f("intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)");
  const close = f("int close(int fd)");
  const setns = f("int setns(int fd, int nstype)");
  const strerror = lib.func("const char *strerror(int errnum)") as unknown as (n: number) => string;
  cached = {
    socket: (a, b, c) => socket(a, b, c),
    bind: (fd, addr, len) => bind(fd, addr, len),
    setsockopt: (fd, level, name, val, len) => setsockopt(fd, level, name, val, len),
    getsockopt: (fd, level, name, val, len) => getsockopt(fd, level, name, val, len),
    send: (fd, buf, len, flags) => Number(send(fd, buf, len, flags)),
    sendAsync: (fd, buf, len, flags) =>
      new Promise((resolve, reject) => {
        send.async(fd, buf, len, flags, (err: unknown, r: number) => (err ? reject(err) : resolve(Number(r))));
      }),
    recv: (fd, buf, len, flags) => Number(recv(fd, buf, len, flags)),
    close: (fd) => close(fd),
    setns: (fd, t) => setns(fd, t),
    errno: () => koffi.errno(),
    strerror: (n) => strerror(n),
  };
  return cached;
}
