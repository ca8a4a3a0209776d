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
 * config without a plain "socket" path, an agent that is down (ADD error 11, DEL queued for the
 * agent to replay: src/plugin/del-queue.ts, STATUS 50) or that does not speak the frame protocol
 * (an older agent).
 *
 * A wedged agent (one that accepts connections but never answers) must not hang the runtime: the
 * whole exchange has a deadline, after which this program answers itself with the spec's error
 * JSON, code 11 "try again later" (50 for STATUS, as the plugin does), exit code 1. The deadline
 * is the plugin's own timeout for the verb (src/plugin/plugin.ts DEFAULT_TIMEOUT_MS, or the
 * config's "timeoutMs") plus FORWARD_SLACK_MS, so that an agent that is merely slow still gives
 * the plugin's own answer; the environment variable WEFT_FORWARD_TIMEOUT_MS sets it outright.
 *
 * Wire format (src/agent-api/frame.ts is the other side):
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
#include <time.h>
#include <unistd.h>

#ifndef WEFT_DEFAULT_SOCKET
#define WEFT_DEFAULT_SOCKET "/run/weft/weft.sock"
#endif

/* The caps of src/agent-api/limits.ts (scripts/build-plugin.mjs passes them): a bigger stdin is
   refused by the full plugin with code 6; a bigger environment the agent would refuse. */
#ifndef WEFT_MAX_STDIN
#define WEFT_MAX_STDIN (1024 * 1024)
#endif
#ifndef WEFT_MAX_ENV
#define WEFT_MAX_ENV (256 * 1024)
#endif
#define MAX_STDIN WEFT_MAX_STDIN
/* The plugin's own per-verb timeouts in ms (src/plugin/plugin.ts DEFAULT_TIMEOUT_MS). */
#ifndef WEFT_TIMEOUT_ADD
#define WEFT_TIMEOUT_ADD 60000
#endif
#ifndef WEFT_TIMEOUT_DEL
#define WEFT_TIMEOUT_DEL 60000
#endif
#ifndef WEFT_TIMEOUT_CHECK
#define WEFT_TIMEOUT_CHECK 30000
#endif
#ifndef WEFT_TIMEOUT_GC
#define WEFT_TIMEOUT_GC 60000
#endif
#ifndef WEFT_TIMEOUT_STATUS
#define WEFT_TIMEOUT_STATUS 5000
#endif
/* Room for the in-agent plugin to time out first and answer itself. */
#define FORWARD_SLACK_MS 10000
/* The spec versions the plugin speaks, space-separated with a space on each side, and the latest. */
#ifndef WEFT_SUPPORTED_VERSIONS
#define WEFT_SUPPORTED_VERSIONS " 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0 "
#endif
#ifndef WEFT_LATEST_VERSION
#define WEFT_LATEST_VERSION "1.1.0"
#endif
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
 * The value of the top-level key `key` of the JSON object in buf, as JSON.parse would see it (the
 * last one wins): 1 and *str (malloc'd) for a plain string shorter than `max`, 2 and *num for a
 * non-negative integer, 0 when the key is absent, -1 when it is anything else (escapes, another
 * type, a long string) or the text is not an object. Doubtful cases go to the full plugin, which
 * parses properly.
 */
static int top_value(const char *s, size_t len, const char *key, size_t max, char **str, unsigned long long *num) {
  size_t i = 0, klen = strlen(key);
  int depth = 0, expect_key = 0, after_key = 0, found = 0;
  *str = NULL;
  *num = 0;
  while (i < len) {
    char c = s[i];
    if (c == '"') {
      size_t start = ++i;
      int escaped = 0;
      while (i < len && s[i] != '"') {
        if (s[i] == '\\') { escaped = 1; i++; }
        i++;
      }
      if (i >= len) goto doubtful;
      size_t n = i - start;
      i++;
      if (depth == 1 && expect_key) {
        after_key = !escaped && n == klen && memcmp(s + start, key, klen) == 0;
        expect_key = 0;
      } else if (depth == 1 && after_key) {
        free(*str);
        *str = NULL;
        if (escaped || n == 0 || n >= max || !(*str = strndup(s + start, n))) goto doubtful;
        found = 1;
        after_key = 0;
      }
      continue;
    }
    if (depth == 1 && after_key && c >= '0' && c <= '9') {
      unsigned long long v = 0;
      while (i < len && s[i] >= '0' && s[i] <= '9' && v < 1000000000ULL) v = v * 10 + (unsigned)(s[i++] - '0');
      if (i < len && (s[i] == '.' || s[i] == 'e' || s[i] == 'E' || (s[i] >= '0' && s[i] <= '9'))) goto doubtful;
      free(*str);
      *str = NULL;
      *num = v;
      found = 2;
      after_key = 0;
      continue;
    }
    if (c == '{' || c == '[') {
      if (depth == 1 && after_key) goto doubtful;
      depth++;
      expect_key = (c == '{' && depth == 1);
    } else if (c == '}' || c == ']') {
      if (depth == 1 && after_key) goto doubtful;
      depth--;
      if (depth == 0) return found;
    } else if (c == ',' && depth == 1) {
      if (after_key) goto doubtful; /* another type of value */
      expect_key = 1;
    } else if (depth == 0 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      break; /* not an object */
    }
    i++;
  }
doubtful:
  free(*str);
  *str = NULL;
  return -1;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long long deadline;

/* Sets the socket's send and receive timeouts to what is left before the deadline; 0 if none is. */
static int arm(int fd) {
  long long left = deadline - now_ms();
  if (left <= 0) return 0;
  struct timeval tv = { .tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000 };
  return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}

/* The agent did not answer in time: answer as the plugin would (src/plugin/plugin.ts), and stop. */
static void timed_out(const char *cmd, const char *version, long long ms, const char *socket_path) {
  int status = !strcmp(cmd, "STATUS");
  const char *path = socket_path;
  for (const char *c = socket_path; *c; c++) if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) path = "(its socket)";
  printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"the weft agent on %s did not answer within %lld ms\","
         "\"details\":\"%s\"}\n", version, status ? 50 : 11, path, ms,
         status ? "the agent accepts connections but does not answer" : "the agent may be overloaded or wedged; the runtime should retry");
  fflush(stdout);
  exit(1);
}

/* Set when a socket read or write ran into the deadline. */
static int deadline_passed;

/* timed: a socket write, bounded by the deadline. */
static int write_all(int fd, const void *p, size_t n, int timed) {
  const char *b = p;
  while (n > 0) {
    if (timed && !arm(fd)) { deadline_passed = 1; return -1; }
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && timed && (errno == EAGAIN || errno == EWOULDBLOCK)) deadline_passed = 1;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_full(int fd, void *p, size_t n) {
  char *b = p;
  while (n > 0) {
    if (!arm(fd)) { deadline_passed = 1; return -1; }
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) deadline_passed = 1;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

/* The plugin's own timeout for the verb (or the config's "timeoutMs") plus the slack; or the env's. */
static long long timeout_ms(const char *cmd, int has_timeout, unsigned long long conf_ms) {
  const char *env = getenv("WEFT_FORWARD_TIMEOUT_MS");
  if (env && *env) {
    char *end;
    unsigned long long v = strtoull(env, &end, 10);
    if (!*end && v > 0 && v <= 3600000ULL) return (long long)v;
  }
  long long base = !strcmp(cmd, "ADD") ? WEFT_TIMEOUT_ADD : !strcmp(cmd, "DEL") ? WEFT_TIMEOUT_DEL
                 : !strcmp(cmd, "CHECK") ? WEFT_TIMEOUT_CHECK : !strcmp(cmd, "GC") ? WEFT_TIMEOUT_GC : WEFT_TIMEOUT_STATUS;
  if (has_timeout && conf_ms > 0 && conf_ms <= 600000ULL) base = (long long)conf_ms;
  return base + FORWARD_SLACK_MS;
}

/* The config's cniVersion when the plugin speaks it (the error is then in that version), else the latest. */
static const char *error_version(void) {
  static char buf[16];
  char *v;
  unsigned long long ignored;
  if (top_value(stdin_buf, stdin_len, "cniVersion", sizeof buf - 2, &v, &ignored) == 1) {
    snprintf(buf, sizeof buf, " %s ", v);
    free(v);
    if (strstr(WEFT_SUPPORTED_VERSIONS, buf)) {
      memmove(buf, buf + 1, strlen(buf));
      buf[strlen(buf) - 1] = 0;
      return buf;
    }
  }
  return WEFT_LATEST_VERSION;
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

  char *path;
  unsigned long long ignored, conf_timeout;
  int sock_kind = top_value(stdin_buf, stdin_len, "socket", sizeof(((struct sockaddr_un *)0)->sun_path), &path, &ignored);
  if (sock_kind == 0) path = strdup(WEFT_DEFAULT_SOCKET);
  else if (sock_kind != 1) exec_full(argv, 1);
  if (!path) exec_full(argv, 1);
  char *unused;
  int has_timeout = top_value(stdin_buf, stdin_len, "timeoutMs", 1, &unused, &conf_timeout) == 2;
  long long limit = timeout_ms(cmd, has_timeout, conf_timeout);
  deadline = now_ms() + limit;

  size_t env_len = 0;
  for (char **e = environ; *e; e++) env_len += strlen(*e) + 1;
  if (env_len > WEFT_MAX_ENV) exec_full(argv, 1);

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) exec_full(argv, 1);
  /* A unix connect blocks while the agent's backlog is full (it stopped accepting): bounded too. */
  if (!arm(fd) || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno == EAGAIN || errno == EINPROGRESS) timed_out(cmd, error_version(), limit, path);
    exec_full(argv, 1); /* nobody listens: the full plugin says so (11, STATUS 50) */
  }

  /* The whole frame in one buffer, one write: fewer system calls on the path every pod takes. */
  size_t frame_len = MAGIC_LEN + 1 + 4 + env_len + 4 + stdin_len;
  unsigned char *frame = malloc(frame_len), *p = frame;
  if (!frame) exec_full(argv, 1);
  memcpy(p, MAGIC, MAGIC_LEN); p += MAGIC_LEN;
  *p++ = '\n';
  put_u32(p, (uint32_t)env_len); p += 4;
  for (char **e = environ; *e; e++) { size_t n = strlen(*e) + 1; memcpy(p, *e, n); p += n; }
  put_u32(p, (uint32_t)stdin_len); p += 4;
  memcpy(p, stdin_buf, stdin_len);
  int bad = write_all(fd, frame, frame_len, 1);
  free(frame);
  if (deadline_passed) timed_out(cmd, error_version(), limit, path);
  shutdown(fd, SHUT_WR);

  unsigned char head[MAGIC_LEN + 8];
  char *out = NULL;
  uint32_t out_len = 0;
  /* Nothing has been printed yet: an agent that cannot answer in this protocol is an older one,
     or one that died on the way; the full plugin then answers (and retries the socket). An agent
     that does not answer in time is not asked again: the runtime gets 11 and retries later. */
  if (!bad && read_full(fd, head, sizeof head) == 0 && memcmp(head, MAGIC, MAGIC_LEN) == 0) {
    out_len = (uint32_t)head[12] << 24 | (uint32_t)head[13] << 16 | (uint32_t)head[14] << 8 | head[15];
    out = malloc(out_len + 1);
    if (out && read_full(fd, out, out_len) != 0) { free(out); out = NULL; }
  }
  if (!out && deadline_passed) timed_out(cmd, error_version(), limit, path);
  close(fd);
  if (!out) exec_full(argv, 1);
  int32_t code = (int32_t)((uint32_t)head[8] << 24 | (uint32_t)head[9] << 16 | (uint32_t)head[10] << 8 | head[11]);
  if (write_all(1, out, out_len, 0) != 0) return 1;
  return code;
}
