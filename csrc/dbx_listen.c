/* The loopback listener: binding 127.0.0.1 and ::1, accepting and reading connections
 * until one sends a complete request head (parsed by dbx_req.c), writing the response.
 *
 * accept4 and SOCK_CLOEXEC/SOCK_NONBLOCK are GNU/Linux; the build's
 * _POSIX_C_SOURCE alone hides them. */
#define _GNU_SOURCE
#include "dbx_listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0
#endif

#define CODE_AS_NAME(id, name) name,
static const char *const CODE_NAMES[] = { DBX_LISTEN_CODES(CODE_AS_NAME) };
#undef CODE_AS_NAME

const char *dbx_listen_code_name(dbx_listen_code c) {
  return (unsigned)c < DBX_LISTEN_NCODES ? CODE_NAMES[c] : "listen";
}

typedef struct dbx_conn {
  int       fd;          /* -1: free slot */
  long long accepted;    /* monotonic ms */
  long long deadline;    /* monotonic ms: accepted + DBX_LISTEN_SLOW_MS */
  size_t    len;
  char     *buf;         /* DBX_LISTEN_MAX_HEAD bytes, kept for the slot's next connection */
} dbx_conn;

struct dbx_listener {
  int      fd4, fd6;     /* listening sockets; -1 when absent */
  int      port;
  int      pending;      /* index of the connection owed a response, or -1 */
  long long accept_pause; /* monotonic ms: after EMFILE and the like, do not poll the
                           * listening sockets (which stay readable) before this */
  dbx_conn conns[DBX_LISTEN_MAX_CONNS];
  char     msg[256];
};

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int poll_ms(long long deadline, long long now) {
  long long d = deadline - now;
  if (d <= 0) return 0;
  return d > 1000000 ? 1000000 : (int)d;
}

/* ---- responses ---- */

static const char *reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

/* Sends all of p within the deadline (0: no waiting at all). 0, or -1 with errno
 * (ETIMEDOUT on the deadline). */
static int send_all(int fd, const char *p, size_t n, long long deadline, int more) {
  int flags = MSG_NOSIGNAL;
#ifdef MSG_MORE
  if (more) flags |= MSG_MORE;
#else
  (void)more;
#endif
  while (n > 0) {
    ssize_t w = send(fd, p, n, flags);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd;
      long long now = mono_ms();
      int r;
      if (now >= deadline) { errno = ETIMEDOUT; return -1; }
      pfd.fd = fd;
      pfd.events = POLLOUT;
      pfd.revents = 0;
      r = poll(&pfd, 1, poll_ms(deadline, now));
      if (r < 0 && errno != EINTR) return -1;
      continue;
    }
    if (w == 0) errno = EPIPE;
    return -1;
  }
  return 0;
}

static int send_response(int fd, int status, const char *ctype, size_t ctlen,
                         const char *body, size_t blen, long long deadline) {
  char head[640];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\n"
                    "Content-Type: %.*s\r\n"
                    "Content-Length: %lu\r\n"
                    "Connection: close\r\n"
                    "Cache-Control: no-store\r\n"
                    "X-Content-Type-Options: nosniff\r\n"
                    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
                    "Referrer-Policy: no-referrer\r\n"
                    "\r\n",
                    status, reason(status), (int)ctlen, ctype, (unsigned long)blen);
  if (hn < 0 || (size_t)hn >= sizeof head) { errno = EINVAL; return -1; }
  if (send_all(fd, head, (size_t)hn, deadline, blen > 0) != 0) return -1;
  return send_all(fd, body, blen, deadline, 0);
}

/* Half-close, take what the peer already sent (so that close() does not turn into
 * a reset that could destroy the response in flight), then close. */
static void close_gracefully(int fd) {
  char sink[1024];
  int i;
  shutdown(fd, SHUT_WR);
  for (i = 0; i < 64; i++) {
    ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  close(fd);
}

static void conn_close(dbx_conn *c) {
  if (c->fd >= 0) close_gracefully(c->fd);
  c->fd = -1;
  c->len = 0;
}

/* An error answer to a client we are done with: one attempt, never a wait (a client
 * that does not read must not hold up the others), then close. */
static void conn_error(dbx_conn *c, int status, const char *text) {
  static const char plain[] = "text/plain; charset=utf-8";
  (void)send_response(c->fd, status, plain, sizeof plain - 1, text, strlen(text), 0);
  conn_close(c);
}

/* A connection that is done for without a complete head: 408 when it sent something. */
static void conn_drop(dbx_conn *c) {
  if (c->len > 0) conn_error(c, 408, "Request timeout.\n");
  else conn_close(c);              /* an idle speculative connection */
}

/* ---- binding ---- */

static int bind_one(int family, int port) {
  int fd, one = 1, saved;
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  struct sockaddr *sa;
  socklen_t salen;
  fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
  if (family == AF_INET) {
    memset(&a4, 0, sizeof a4);
    a4.sin_family = AF_INET;
    a4.sin_port = htons((unsigned short)port);
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa = (struct sockaddr *)&a4;
    salen = sizeof a4;
  } else {
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) goto fail;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((unsigned short)port);
    a6.sin6_addr = in6addr_loopback;
    sa = (struct sockaddr *)&a6;
    salen = sizeof a6;
  }
  if (bind(fd, sa, salen) != 0 || listen(fd, DBX_LISTEN_BACKLOG) != 0) goto fail;
  return fd;
fail:
  saved = errno;
  close(fd);
  errno = saved;
  return -1;
}

static int bound_port(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) return -1;
  return ntohs(a.sin_port);
}

/* "8020-8040" for an ascending run, else the list (shortened). */
static void describe_ports(char *out, size_t cap, const int *ports, size_t n) {
  size_t i, used = 0;
  int run = 1;
  for (i = 1; i < n; i++)
    if (ports[i] != ports[i - 1] + 1) run = 0;
  if (n > 1 && run) {
    snprintf(out, cap, "%d-%d", ports[0], ports[n - 1]);
    return;
  }
  out[0] = '\0';
  for (i = 0; i < n && used + 16 < cap; i++) {
    int w = snprintf(out + used, cap - used, "%s%d", i ? ", " : "", ports[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (i < n) snprintf(out + used, cap - used, ", ...");
}

dbx_listen_code dbx_listen_open(const int *ports, size_t n, dbx_listener **out,
                                char *msg, size_t msglen) {
  dbx_listener *l;
  size_t i;
  char list[160];
  *out = NULL;
  l = calloc(1, sizeof *l);
  if (l == NULL) {
    snprintf(msg, msglen, "listen: out of memory");
    return DBX_LISTEN_NOMEM;
  }
  l->fd4 = l->fd6 = -1;
  l->pending = -1;
  for (i = 0; i < DBX_LISTEN_MAX_CONNS; i++) l->conns[i].fd = -1;
  for (i = 0; i < n; i++) {
    int port, fd4 = bind_one(AF_INET, ports[i]), fd6;
    if (fd4 < 0) {
      if (errno == EADDRINUSE) continue;
      snprintf(msg, msglen, "listen on 127.0.0.1:%d: %s", ports[i], strerror(errno));
      free(l);
      return DBX_LISTEN_ERROR;
    }
    port = ports[i] != 0 ? ports[i] : bound_port(fd4);
    fd6 = port > 0 ? bind_one(AF_INET6, port) : -1;
    if (fd6 < 0 && port > 0 && errno == EADDRINUSE) {
      close(fd4);
      continue;
    }
    l->fd4 = fd4;
    l->fd6 = fd6;
    l->port = port;
    *out = l;
    return DBX_LISTEN_OK;
  }
  free(l);
  describe_ports(list, sizeof list, ports, n);
  snprintf(msg, msglen, "no free port to listen on: %s all in use on 127.0.0.1 or ::1", list);
  return DBX_LISTEN_PORT_BUSY;
}

void dbx_listen_free(dbx_listener *l) {
  size_t i;
  if (l == NULL) return;
  if (l->pending >= 0)
    conn_error(&l->conns[l->pending], 500, "The login listener was closed.\n");
  for (i = 0; i < DBX_LISTEN_MAX_CONNS; i++) {
    if (l->conns[i].fd >= 0) close(l->conns[i].fd);
    free(l->conns[i].buf);
  }
  if (l->fd4 >= 0) close(l->fd4);
  if (l->fd6 >= 0) close(l->fd6);
  free(l);
}

int dbx_listen_port(const dbx_listener *l) { return l->port; }
int dbx_listen_has_ipv6(const dbx_listener *l) { return l->fd6 >= 0; }
int dbx_listen_pending(const dbx_listener *l) { return l->pending >= 0; }
const char *dbx_listen_message(const dbx_listener *l) { return l->msg; }

/* ---- waiting ---- */

/* The oldest open connection other than the one owed a response, or NULL. */
static dbx_conn *oldest_conn(dbx_listener *l) {
  dbx_conn *o = NULL;
  int i;
  for (i = 0; i < DBX_LISTEN_MAX_CONNS; i++) {
    dbx_conn *c = &l->conns[i];
    if (c->fd >= 0 && i != l->pending && (o == NULL || c->accepted < o->accepted)) o = c;
  }
  return o;
}

/* A slot for a new connection: a free one, else the oldest connection's once it has had
 * its grace time (it is dropped), else NULL. */
static dbx_conn *slot_for_new(dbx_listener *l, long long now) {
  dbx_conn *c;
  size_t i;
  for (i = 0; i < DBX_LISTEN_MAX_CONNS; i++)
    if (l->conns[i].fd < 0) return &l->conns[i];
  c = oldest_conn(l);
  if (c == NULL || now - c->accepted < DBX_LISTEN_GRACE_MS) return NULL;
  conn_drop(c);
  return c;
}

static void accept_all(dbx_listener *l, int lfd, long long now) {
  for (;;) {
    dbx_conn *c;
    int fd;
    /* a connection accepted in this round is in its grace time: at most one round of
     * new connections replaces the old ones, and each gets read before it can go */
    c = slot_for_new(l, now);
    if (c == NULL) return;            /* the rest waits in the backlog */
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) l->accept_pause = now + 100;   /* EMFILE... */
      return;
    }
    if (c->buf == NULL && (c->buf = malloc(DBX_LISTEN_MAX_HEAD)) == NULL) {
      close(fd);
      return;
    }
    c->fd = fd;
    c->len = 0;
    c->accepted = now;
    c->deadline = now + DBX_LISTEN_SLOW_MS;
  }
}

/* Reads what is there. 1: a request (in req), or a bad request (connection answered
 * and closed; l->msg says why); 0: nothing decided yet. */
static int conn_read(dbx_listener *l, int idx, dbx_req *req, dbx_listen_code *code) {
  dbx_conn *c = &l->conns[idx];
  const char *why;
  dbx_req_status st;
  int gone = 0;                      /* EOF or error: no more bytes will come */
  for (;;) {
    ssize_t r;
    if (c->len == DBX_LISTEN_MAX_HEAD) break;
    r = recv(c->fd, c->buf + c->len, DBX_LISTEN_MAX_HEAD - c->len, 0);
    if (r > 0) { c->len += (size_t)r; continue; }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    gone = 1;
    break;
  }
  /* a complete head counts even when the client has already half-closed */
  st = dbx_req_parse(c->buf, c->len, req, &why);
  if (st == DBX_REQ_MORE && gone) {
    conn_close(c);                   /* went away before finishing its request */
    return 0;
  }
  if (st == DBX_REQ_MORE && c->len < DBX_LISTEN_MAX_HEAD) return 0;
  if (st == DBX_REQ_MORE) {
    snprintf(l->msg, sizeof l->msg, "bad request: request head larger than %d bytes",
             DBX_LISTEN_MAX_HEAD);
    conn_error(c, 431, "Request header fields too large.\n");
  } else if (st == DBX_REQ_BAD) {
    snprintf(l->msg, sizeof l->msg, "bad request: %s", why);
    conn_error(c, 400, "Bad request.\n");
  } else if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
    snprintf(l->msg, sizeof l->msg, "bad request: method %.*s is not allowed, only GET",
             req->method_len > 32 ? 32 : (int)req->method_len, req->method);
    conn_error(c, 400, "Bad request: only GET is allowed here.\n");
  } else {
    l->pending = idx;
    l->msg[0] = '\0';
    *code = DBX_LISTEN_OK;
    return 1;
  }
  *code = DBX_LISTEN_BAD_REQUEST;
  return 1;
}

dbx_listen_code dbx_listen_wait(dbx_listener *l, long timeout_ms, dbx_req *req) {
  long long now = mono_ms(), deadline = now + (timeout_ms > 0 ? timeout_ms : 0);
  int late_rounds = 0;
  if (l->pending >= 0) {
    conn_error(&l->conns[l->pending], 500, "No response was produced for this request.\n");
    l->pending = -1;
  }
  l->msg[0] = '\0';
  for (;;) {
    struct pollfd pfd[2 + DBX_LISTEN_MAX_CONNS];
    int who[2 + DBX_LISTEN_MAX_CONNS];   /* -1: fd4, -2: fd6, else connection index */
    int nfd = 0, i, free_slot = 0, r;
    long long wake = deadline;
    dbx_conn *oldest;
    for (i = 0; i < DBX_LISTEN_MAX_CONNS; i++) {
      dbx_conn *c = &l->conns[i];
      if (c->fd < 0) { free_slot = 1; continue; }
      if (now >= c->deadline) {
        conn_drop(c);
        free_slot = 1;
        continue;
      }
      if (c->deadline < wake) wake = c->deadline;
      pfd[nfd].fd = c->fd;
      pfd[nfd].events = POLLIN;
      who[nfd++] = i;
    }
    /* all slots taken: a new connection may replace the oldest once its grace is over */
    if (!free_slot && (oldest = oldest_conn(l)) != NULL) {
      if (now - oldest->accepted >= DBX_LISTEN_GRACE_MS) free_slot = 1;
      else if (oldest->accepted + DBX_LISTEN_GRACE_MS < wake) wake = oldest->accepted + DBX_LISTEN_GRACE_MS;
    }
    if (free_slot && now < l->accept_pause) {
      if (l->accept_pause < wake) wake = l->accept_pause;
      free_slot = 0;
    }
    if (free_slot && l->fd4 >= 0) { pfd[nfd].fd = l->fd4; pfd[nfd].events = POLLIN; who[nfd++] = -1; }
    if (free_slot && l->fd6 >= 0) { pfd[nfd].fd = l->fd6; pfd[nfd].events = POLLIN; who[nfd++] = -2; }
    for (i = 0; i < nfd; i++) pfd[i].revents = 0;
    r = poll(pfd, (nfds_t)nfd, poll_ms(wake, now));
    if (r < 0) {
      if (errno == EINTR) {
        snprintf(l->msg, sizeof l->msg, "interrupted by a signal");
        return DBX_LISTEN_INTERRUPTED;
      }
      snprintf(l->msg, sizeof l->msg, "poll: %s", strerror(errno));
      return DBX_LISTEN_IO;
    }
    now = mono_ms();
    for (i = 0; i < nfd && r > 0; i++) {
      dbx_listen_code code;
      if (pfd[i].revents == 0 || who[i] < 0) continue;
      if (conn_read(l, who[i], req, &code)) return code;
    }
    for (i = 0; i < nfd && r > 0; i++)
      if (pfd[i].revents != 0 && who[i] < 0) accept_all(l, pfd[i].fd, now);
    /* past the deadline: stop once nothing new arrives (or after a few busy rounds) */
    if (now >= deadline && (r == 0 || ++late_rounds > 3)) {
      snprintf(l->msg, sizeof l->msg, "no request within %ld ms", timeout_ms);
      return DBX_LISTEN_TIMEOUT;
    }
  }
}

dbx_listen_code dbx_listen_respond(dbx_listener *l, int status, const char *content_type,
                                   size_t ctype_len, const char *body, size_t body_len) {
  dbx_conn *c;
  int rc, err;
  if (l->pending < 0) {
    snprintf(l->msg, sizeof l->msg, "respond: no request is waiting for a response");
    return DBX_LISTEN_IO;
  }
  c = &l->conns[l->pending];
  l->pending = -1;
  rc = send_response(c->fd, status, content_type, ctype_len, body, body_len,
                     mono_ms() + DBX_LISTEN_SLOW_MS);
  err = errno;
  conn_close(c);
  if (rc != 0) {
    snprintf(l->msg, sizeof l->msg, "respond: %s", err == ETIMEDOUT
             ? "the client did not take the response in time" : strerror(err));
    return DBX_LISTEN_IO;
  }
  return DBX_LISTEN_OK;
}
