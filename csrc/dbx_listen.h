/* One-shot loopback HTTP listener for the OAuth U2M browser callback. No Lua here.
 *
 * A dbx_listener owns two listening sockets (127.0.0.1 and, when the machine has
 * IPv6, ::1 on the same port), the connections it has accepted but not finished
 * with, and their head buffers; dbx_listen_free releases all of it at any time.
 * No threads and no signals: waiting is poll() with a deadline, every fd is
 * CLOEXEC and non-blocking, writes use MSG_NOSIGNAL.
 *
 * Browsers open speculative extra connections (and may send nothing on them), so
 * wait() reads up to DBX_LISTEN_MAX_CONNS connections at once and returns the
 * first complete request head; the others stay with the listener for the next
 * wait(). A connection that sends no complete head within DBX_LISTEN_SLOW_MS of
 * being accepted is dropped (408 when it had sent anything). When every slot is
 * taken and another connection waits, the oldest one that has had at least
 * DBX_LISTEN_GRACE_MS is dropped to make room: idle or slow clients, however
 * many, delay a new connection by about DBX_LISTEN_GRACE_MS, not by the read
 * deadline. Error answers to such clients are written without waiting (they are
 * small; a client that does not take them loses them). Request heads are parsed
 * by dbx_req. */
#ifndef DBX_LISTEN_H
#define DBX_LISTEN_H

#include <stddef.h>

#include "dbx_req.h"

#define DBX_LISTEN_MAX_HEAD   8192   /* request line + headers + empty line */
#define DBX_LISTEN_SLOW_MS    5000   /* per connection: to send the head, and to take the response */
#define DBX_LISTEN_GRACE_MS   200    /* a connection's time before it may be dropped for a newer one */
#define DBX_LISTEN_MAX_CONNS  32     /* connections being read at once */
#define DBX_LISTEN_BACKLOG    64
#define DBX_LISTEN_MAX_CTYPE  256

/* Failure classes; the string is what Lua sees as the error code. */
#define DBX_LISTEN_CODES(X)                         \
  X(DBX_LISTEN_OK,          "ok")                   \
  X(DBX_LISTEN_PORT_BUSY,   "port_busy")            \
  X(DBX_LISTEN_ERROR,       "listen")               \
  X(DBX_LISTEN_TIMEOUT,     "timeout")              \
  X(DBX_LISTEN_BAD_REQUEST, "bad_request")          \
  X(DBX_LISTEN_IO,          "io")                   \
  X(DBX_LISTEN_INTERRUPTED, "interrupted")          \
  X(DBX_LISTEN_NOMEM,       "nomem")

#define DBX_LISTEN_AS_ENUM(id, name) id,
typedef enum dbx_listen_code { DBX_LISTEN_CODES(DBX_LISTEN_AS_ENUM) DBX_LISTEN_NCODES } dbx_listen_code;
#undef DBX_LISTEN_AS_ENUM

const char *dbx_listen_code_name(dbx_listen_code c);

typedef struct dbx_listener dbx_listener;

/* Binds 127.0.0.1 on the first port of the list that is free (0 = any free port),
 * with SO_REUSEADDR (a previous login's TIME_WAIT does not block the port; a live
 * listener still does), then ::1 on the same port. ::1 failing because the machine
 * has no IPv6 loopback is fine; ::1 in use by someone else makes the port busy,
 * since a browser resolving localhost to ::1 would reach them instead of us.
 * DBX_LISTEN_PORT_BUSY when every port is taken, DBX_LISTEN_ERROR for anything
 * else; msg explains. */
dbx_listen_code dbx_listen_open(const int *ports, size_t n, dbx_listener **out,
                                char *msg, size_t msglen);
/* Closes everything; a request still waiting for its response gets a 500. */
void dbx_listen_free(dbx_listener *l);

int dbx_listen_port(const dbx_listener *l);
int dbx_listen_has_ipv6(const dbx_listener *l);
/* 1 while the request returned by the last wait has not been responded to. */
int dbx_listen_pending(const dbx_listener *l);
const char *dbx_listen_message(const dbx_listener *l);

/* Waits up to timeout_ms (0: only what is already there) for the next complete
 * request head. A request still pending from the last wait is answered with a 500
 * and closed first. DBX_LISTEN_OK: *req points into the listener and stays valid
 * until the next wait, respond or free; the connection stays open until respond.
 * DBX_LISTEN_BAD_REQUEST: malformed, oversized (431) or not GET; that connection
 * got an error response and is closed. DBX_LISTEN_TIMEOUT; DBX_LISTEN_INTERRUPTED
 * when a signal interrupted the wait (EINTR: the caller's signal handling, such as
 * lua.c's for Ctrl-C, gets to run; waiting again continues with every connection
 * kept); DBX_LISTEN_IO when poll itself fails. */
dbx_listen_code dbx_listen_wait(dbx_listener *l, long timeout_ms, dbx_req *req);

/* Writes a complete HTTP/1.1 response to the pending request (Connection: close,
 * Content-Length and the security headers) within DBX_LISTEN_SLOW_MS, then closes
 * the connection, also on failure. content_type: at most DBX_LISTEN_MAX_CTYPE bytes, no control bytes.
 * DBX_LISTEN_OK, or DBX_LISTEN_IO (the client went away; no pending request). */
dbx_listen_code dbx_listen_respond(dbx_listener *l, int status, const char *content_type,
                                   size_t ctype_len, const char *body, size_t body_len);

#endif
