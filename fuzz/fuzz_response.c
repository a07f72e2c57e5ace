/* libFuzzer target: the HTTP client's handling of whatever a server sends back, end to end.
 * The input (after one control byte) is written verbatim by a server thread on a loopback
 * connection in answer to a real request from dbx_http_perform: libcurl parses it and
 * dbx_http's callbacks collect the header block and the body under their limits.
 *
 * Control byte: bits 0-1 pick max_body (0, 7, 1024 or the 16 MiB default), bit 2 makes the
 * request a HEAD, bit 3 a POST with a small body, bits 4-5 split the response into 1, 2 or 3
 * writes with a short pause between them (so headers and bodies arrive in pieces).
 *
 * Properties: no crash, no leak, no read out of bounds; perform returns within its timeout;
 * a failure has a known class and a NUL-terminated one-line message; a success has a 3-digit
 * status that our own status-line parser agrees with, a body within max_body (empty for
 * HEAD), and merged header records that cover headers_len exactly, with unique lower-case
 * token names and values free of CR, LF and NUL, trimmed of blanks. */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dbx_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

#define TIMEOUT_MS 3000L

static int listen_fd = -1;
static int port;

static void setup(void) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int one = 1;
  if (listen_fd >= 0) return;
  CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(listen_fd >= 0);
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  CHECK(bind(listen_fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(listen_fd, 16) == 0);
  CHECK(getsockname(listen_fd, (struct sockaddr *)&a, &alen) == 0);
  port = ntohs(a.sin_port);
}

typedef struct server {
  const uint8_t *resp;
  size_t         len;
  int            pieces;
  size_t         body_len;    /* request body bytes to read after the head */
} server;

static int wait_readable(int fd, int ms) {
  struct pollfd p;
  p.fd = fd;
  p.events = POLLIN;
  p.revents = 0;
  return poll(&p, 1, ms) > 0;
}

static void pause_briefly(void) {
  struct timespec ts = { 0, 2 * 1000 * 1000 };   /* 2 ms: curl reads what it has so far */
  nanosleep(&ts, NULL);
}

static void *serve(void *arg) {
  server *s = arg;
  char buf[4096], head[8192];
  size_t have = 0, need = 0, sent = 0;
  int fd, got_head = 0, i;
  ssize_t n;
  if (!wait_readable(listen_fd, (int)TIMEOUT_MS)) return NULL;
  fd = accept(listen_fd, NULL, NULL);
  if (fd < 0) return NULL;
  /* the request head, then its body */
  while (!got_head && wait_readable(fd, (int)TIMEOUT_MS)) {
    n = recv(fd, head + have, sizeof head - have, 0);
    if (n <= 0) break;
    have += (size_t)n;
    for (i = 0; i + 3 < (int)have; i++) {
      if (memcmp(head + i, "\r\n\r\n", 4) == 0) {
        got_head = 1;
        need = s->body_len - ((have - (size_t)i - 4) < s->body_len ? (have - (size_t)i - 4) : s->body_len);
        break;
      }
    }
    if (have == sizeof head) break;
  }
  while (need > 0 && wait_readable(fd, (int)TIMEOUT_MS)) {
    n = recv(fd, buf, need < sizeof buf ? need : sizeof buf, 0);
    if (n <= 0) break;
    need -= (size_t)n;
  }
  /* the response, in pieces */
  for (i = 0; i < s->pieces && sent < s->len; i++) {
    size_t part = i == s->pieces - 1 ? s->len - sent : (s->len / (size_t)s->pieces);
    size_t off = 0;
    while (off < part) {
      n = send(fd, s->resp + sent + off, part - off, MSG_NOSIGNAL);
      if (n <= 0) { i = s->pieces; break; }
      off += (size_t)n;
    }
    sent += off;
    if (i + 1 < s->pieces) pause_briefly();
  }
  shutdown(fd, SHUT_WR);
  /* until the client hangs up */
  while (wait_readable(fd, (int)TIMEOUT_MS)) {
    n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
  }
  close(fd);
  return NULL;
}

static int is_lower_token(const char *s, size_t n) {
  size_t i;
  if (!dbx_http_is_token(s, n)) return 0;
  for (i = 0; i < n; i++)
    if (s[i] >= 'A' && s[i] <= 'Z') return 0;
  return 1;
}

static void check_response(const dbx_http_resp *r, size_t max_body, int head) {
  dbx_hdr_iter it, it2;
  const char *name, *val, *n2, *v2;
  size_t nlen, vlen, n2len, v2len, i, covered = 0;
  CHECK(r->status >= 100 && r->status <= 999);
  CHECK(r->body != NULL && r->body_len <= max_body);
  if (head) CHECK(r->body_len == 0);
  CHECK(r->headers != NULL || r->headers_len == 0);
  dbx_hdr_iter_init(&it, r->headers, r->headers_len);
  while (dbx_hdr_next(&it, &name, &nlen, &val, &vlen)) {
    covered += 2 * sizeof(uint32_t) + nlen + vlen;
    CHECK(is_lower_token(name, nlen));
    for (i = 0; i < vlen; i++) CHECK(val[i] != '\r' && val[i] != '\n' && val[i] != '\0');
    if (vlen > 0) {
      CHECK(val[0] != ' ' && val[0] != '\t');
      CHECK(val[vlen - 1] != ' ' && val[vlen - 1] != '\t');
    }
    it2 = it;
    while (dbx_hdr_next(&it2, &n2, &n2len, &v2, &v2len))
      CHECK(!(n2len == nlen && memcmp(n2, name, nlen) == 0));
  }
  CHECK(covered == r->headers_len);
}

static void check_failure(dbx_http *h, dbx_http_code code) {
  const char *msg = dbx_http_message(h);
  size_t n = strlen(msg), i;
  CHECK(code > DBX_HTTP_OK && code < DBX_HTTP_NCODES);
  CHECK(n < CURL_ERROR_SIZE + 64);
  for (i = 0; i < n; i++) CHECK(msg[i] != '\n' || i == n - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t MAX_BODY[4] = { 0, 7, 1024, DBX_HTTP_DEFAULT_MAX_BODY };
  char url[64];
  dbx_http *h;
  dbx_http_req req;
  dbx_http_resp resp;
  dbx_http_code code;
  server srv;
  pthread_t t;
  uint8_t ctl;
  int head, post;

  if (size < 1) return 0;
  setup();
  ctl = data[0];
  head = (ctl & 4) != 0;
  post = !head && (ctl & 8) != 0;
  srv.resp = data + 1;
  srv.len = size - 1;
  srv.pieces = 1 + ((ctl >> 4) & 3) % 3;
  srv.body_len = post ? 3 : 0;

  h = dbx_http_new();
  CHECK(h != NULL);
  dbx_http_begin(h);
  CHECK(dbx_http_add_header(h, "Accept", 6, "application/json", 16) == DBX_HTTP_OK);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/oidc/v1/token", port);
  memset(&req, 0, sizeof req);
  req.method = head ? "HEAD" : post ? "POST" : "GET";
  req.method_len = strlen(req.method);
  req.url = url;
  req.url_len = strlen(url);
  req.body = post ? "a=b" : NULL;
  req.body_len = post ? 3 : 0;
  req.timeout_ms = TIMEOUT_MS;
  req.max_body = MAX_BODY[ctl & 3];

  CHECK(pthread_create(&t, NULL, serve, &srv) == 0);
  code = dbx_http_perform(h, &req, &resp);
  if (code == DBX_HTTP_OK) check_response(&resp, req.max_body, head);
  else check_failure(h, code);
  dbx_http_end(h);
  dbx_http_free(h);          /* closes the connection: the server thread sees EOF */
  CHECK(pthread_join(t, NULL) == 0);
  return 0;
}
