/*
 * weft's CNI plugin executable: a small native forwarder in front of the TypeScript plugin.
 *
 * Why native: a runtime execs the plugin for every ADD and DEL, and any JavaScript runtime
 * needs 7-30 ms just to start (PLATFORM.md), more than the whole ADD of the reference plugins.
 * This program starts as fast as /bin/true (about 1 ms, measured) and decides nothing: it hands its environment
 * and stdin to the node agent, which runs the very same TypeScript plugin code (src/plugin/
 * plugin.ts) in process, and copies the agent's answer (stdout + exit code) back out.
 *
 * Whenever the fast path is not possible it execs the full TypeScript plugin, installed beside
 * it as "<this executable>-full", with the same argv, environment and stdin, so every answer is
 * still the TypeScript plugin's: VERSION and unknown commands, stdin over 1 MiB (error 6), a
 * config without a plain "socket" path, an agent that is down (error 11, STATUS 50) or that does
 * not speak the frame protocol (an older agent).
 *
 * Wire format (src/agent/frame.ts is the other side):
 *   request:  "WEFTCNI1\n", u32 env bytes, env ("K=V\0" ...), u32 stdin bytes, stdin
 *   response: "WEFTCNI1", i32 exit code, u32 stdout bytes, stdout.
 * Integers are big-endian.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef WEFT_DEFAULT_SOCKET
#define WEFT_DEFAULT_SOCKET "/run/weft/weft.sock"
#endif

/* Same cap as the TypeScript plugin (src/plugin/stdin.ts): more is refused there with code 6. */
#define MAX_STDIN (1024 * 1024)
static const char MAGIC[] = "WEFTCNI1";
#define MAGIC_LEN 8

extern char **environ;

static char *stdin_buf;
static size_t stdin_len;

/* Execs "<self>-full" with stdin replaced by the bytes already read (if any). Never returns. */
static void exec_full(char **argv, int have_stdin) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 6);
  if (n > 0) {
    memcpy(self + n, "-full", 6);
    if (have_stdin) {
      int fd = memfd_create("weft-cni-stdin", 0);
      size_t off = 0;
      while (fd >= 0 && off < stdin_len) {
        ssize_t w = write(fd, stdin_buf + off, stdin_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { close(fd); fd = -1; break; }
        off += (size_t)w;
      }
      if (fd < 0 || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) goto fail;
      close(fd);
    }
    execv(self, argv);
  }
fail:
  /* Spec error JSON (code 5, I/O failure) so the runtime still gets an answer it can read. */
  printf("{\"cniVersion\":\"1.1.0\",\"code\":5,\"msg\":\"weft: cannot run the plugin beside %s\","
         "\"details\":\"%s\"}\n", argv[0] && !strpbrk(argv[0], "\"\\") ? argv[0] : "weft", strerror(errno));
  exit(1);
}

static int read_stdin(void) {
  size_t cap = 64 * 1024;
  stdin_buf = malloc(cap);
  if (!stdin_buf) return -1;
  for (;;) {
    if (stdin_len == cap) {
      if (cap > MAX_STDIN) return 0; /* over the cap: the full plugin reports it */
      cap *= 2;
      char *p = realloc(stdin_buf, cap);
      if (!p) return -1;
      stdin_buf = p;
    }
    ssize_t r = read(0, stdin_buf + stdin_len, cap - stdin_len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 0;
    stdin_len += (size_t)r;
  }
}

/*
 * The value of the top-level "socket" key of the JSON object in buf, as JSON.parse would see it
 * (the last one wins), or NULL when there is none, it is not a plain string (escapes), or the
 * text is not an object. Anything doubtful goes to the full plugin, which parses properly.
 */
static char *find_socket(const char *s, size_t len, int *present) {
  size_t i = 0;
  int depth = 0, expect_key = 0, after_socket_key = 0;
  char *found = NULL;
  *present = 0;
  while (i < len) {
    char c = s[i];
    if (c == '"') {
      size_t start = ++i;
      int escaped = 0;
      while (i < len && s[i] != '"') {
        if (s[i] == '\\') { escaped = 1; i++; }
        i++;
      }
      if (i >= len) return NULL;
      size_t n = i - start;
      i++;
      if (depth == 1 && expect_key) {
        after_socket_key = !escaped && n == 6 && memcmp(s + start, "socket", 6) == 0;
        if (after_socket_key) *present = 1;
        expect_key = 0;
      } else if (depth == 1 && after_socket_key) {
        free(found);
        found = NULL;
        if (!escaped && n > 0 && n < sizeof(((struct sockaddr_un *)0)->sun_path)) found = strndup(s + start, n);
        if (!found) return NULL;
        after_socket_key = 0;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      if (depth == 1 && after_socket_key) { free(found); return NULL; }
      depth++;
      expect_key = (c == '{' && depth == 1);
    } else if (c == '}' || c == ']') {
      depth--;
      if (depth == 0) return found;
    } else if (c == ',' && depth == 1) {
      expect_key = 1;
      if (after_socket_key) { free(found); return NULL; } /* socket: non-string value */
    } else if (depth == 0 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      break; /* not an object */
    }
    i++;
  }
  free(found);
  return NULL;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_full(int fd, void *p, size_t n) {
  char *b = p;
  while (n > 0) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

int main(int argc, char **argv) {
  (void)argc;
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = getenv("CNI_COMMAND");
  int fast = cmd && (!strcmp(cmd, "ADD") || !strcmp(cmd, "DEL") || !strcmp(cmd, "CHECK") ||
                     !strcmp(cmd, "GC") || !strcmp(cmd, "STATUS"));
  /* VERSION reads stdin only optionally (with a wait); the full plugin knows how. */
  if (!fast) exec_full(argv, 0);
  if (read_stdin() != 0 || stdin_len > MAX_STDIN) exec_full(argv, 1);

  int present;
  char *path = find_socket(stdin_buf, stdin_len, &present);
  if (!path && !present) path = strdup(WEFT_DEFAULT_SOCKET);
  if (!path) exec_full(argv, 1);

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) exec_full(argv, 1);

  size_t env_len = 0;
  for (char **e = environ; *e; e++) env_len += strlen(*e) + 1;
  unsigned char n4[4];
  int bad = write_all(fd, MAGIC, MAGIC_LEN) || write_all(fd, "\n", 1);
  put_u32(n4, (uint32_t)env_len);
  bad = bad || write_all(fd, n4, 4);
  for (char **e = environ; *e && !bad; e++) bad = write_all(fd, *e, strlen(*e) + 1);
  put_u32(n4, (uint32_t)stdin_len);
  bad = bad || write_all(fd, n4, 4) || write_all(fd, stdin_buf, stdin_len);
  shutdown(fd, SHUT_WR);

  unsigned char head[MAGIC_LEN + 8];
  char *out = NULL;
  uint32_t out_len = 0;
  /* Nothing has been printed yet: an agent that cannot answer in this protocol is an older one,
     or one that died on the way; the full plugin then answers (and retries the socket). */
  if (!bad && read_full(fd, head, sizeof head) == 0 && memcmp(head, MAGIC, MAGIC_LEN) == 0) {
    out_len = (uint32_t)head[12] << 24 | (uint32_t)head[13] << 16 | (uint32_t)head[14] << 8 | head[15];
    out = malloc(out_len + 1);
    if (out && read_full(fd, out, out_len) != 0) { free(out); out = NULL; }
  }
  close(fd);
  if (!out) exec_full(argv, 1);
  int32_t code = (int32_t)((uint32_t)head[8] << 24 | (uint32_t)head[9] << 16 | (uint32_t)head[10] << 8 | head[11]);
  if (write_all(1, out, out_len) != 0) return 1;
  return code;
}
