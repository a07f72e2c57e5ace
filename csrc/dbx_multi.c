/* Concurrent requests on one libcurl multi handle: slots (dbx_easy handles, kept across runs)
 * take the next request as one frees up; results are moved into the items. See dbx_multi.h. */
#include "dbx_multi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/err.h>

#include "dbx_easy.h"
#include "dbx_xfer.h"

/* ---- items ---- */

void dbx_mitem_init(dbx_mitem *it) {
  memset(it, 0, sizeof *it);
  it->code = DBX_HTTP_OK;
  dbx_buf_init(&it->body);
  dbx_buf_init(&it->headers);
}

void dbx_mitem_free(dbx_mitem *it) {
  dbx_buf_free(&it->body);
  dbx_buf_free(&it->headers);
  free(it->msg);
  it->msg = NULL;
}

void dbx_mitem_fail(dbx_mitem *it, dbx_http_code code, const char *fmt, ...) {
  char msg[DBX_XFER_MSG];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  free(it->msg);
  it->msg = strdup(msg);                 /* NULL reads as "out of memory" */
  it->code = code;
}

void dbx_mitem_response(const dbx_mitem *it, dbx_http_resp *out) {
  out->status = it->status;
  out->reused = it->reused;
  out->total_time = it->total_time;
  out->http_version = it->http_version;
  out->body = it->body.data ? it->body.data : "";
  out->body_len = it->body.len;
  out->headers = it->headers.data;
  out->headers_len = it->headers.len;
  out->headers_count = it->headers_count;
}

/* ---- the multi handle and its slots ---- */

typedef struct slot {
  dbx_easy    e;
  dbx_mitem  *item;     /* the request in flight on this slot, or NULL */
  int         resolve;  /* CURLOPT_RESOLVE points at the run's list */
  const char *lines;    /* this run's header lines its list was built from (items share them) */
  size_t      lines_len;
} slot;

struct dbx_multi {
  CURLM             *multi;
  slot             **slots;      /* each allocated once: libcurl holds pointers into them */
  size_t             nslots;
  dbx_buf            line;
  struct curl_slist *res_add;    /* the next run's resolve entries */
  struct curl_slist *res_undo;   /* "-host:port" for each */
  struct curl_slist *res_owed;   /* undo entries of the previous run */
  struct curl_slist *res_list;   /* during a run: what each transfer loads (owed, then added) */
};

dbx_multi *dbx_multi_new(void) {
  dbx_multi *m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  dbx_buf_init(&m->line);
  m->multi = curl_multi_init();
  if (m->multi == NULL) {
    free(m);
    return NULL;
  }
  curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  return m;
}

void dbx_multi_free(dbx_multi *m) {
  size_t i;
  if (m == NULL) return;
  for (i = 0; i < m->nslots; i++) {
    if (m->slots[i]->item != NULL) curl_multi_remove_handle(m->multi, m->slots[i]->e.curl);
    dbx_easy_free(&m->slots[i]->e);
    free(m->slots[i]);
  }
  free(m->slots);
  curl_multi_cleanup(m->multi);
  ERR_clear_error();
  curl_slist_free_all(m->res_add);
  curl_slist_free_all(m->res_undo);
  curl_slist_free_all(m->res_owed);
  curl_slist_free_all(m->res_list);
  dbx_buf_free(&m->line);
  free(m);
}

static int grow(dbx_multi *m, size_t want) {
  slot **slots;
  if (want <= m->nslots) return 0;
  slots = realloc(m->slots, want * sizeof *slots);
  if (slots == NULL) return -1;
  m->slots = slots;
  while (m->nslots < want) {
    slot *s = calloc(1, sizeof *s);
    if (s == NULL) return -1;
    if (dbx_easy_init(&s->e, CURL_HTTP_VERSION_2TLS) != 0) {
      dbx_easy_free(&s->e);
      free(s);
      return -1;
    }
    s->e.pipewait = 1;
    m->slots[m->nslots++] = s;
  }
  return 0;
}

static int append_line(struct curl_slist **list, const char *s) {
  struct curl_slist *n = curl_slist_append(*list, s);
  if (n == NULL) return -1;
  *list = n;
  return 0;
}

int dbx_multi_add_resolve(dbx_multi *m, const char *entry, size_t len) {
  const char *key;
  size_t klen;
  if (dbx_http_resolve_key(entry, len, &key, &klen) != 0) return -1;
  m->line.len = 0;
  if (dbx_buf_append(&m->line, entry, len) != 0 || dbx_buf_append(&m->line, "", 1) != 0 ||
      append_line(&m->res_add, m->line.data) != 0)
    return -1;
  m->line.len = 0;
  if (dbx_buf_append(&m->line, "-", 1) != 0 || dbx_buf_append(&m->line, key, klen) != 0 ||
      dbx_buf_append(&m->line, "", 1) != 0 || append_line(&m->res_undo, m->line.data) != 0)
    return -1;
  return 0;
}

void dbx_multi_forget_resolve(dbx_multi *m) {
  curl_slist_free_all(m->res_add);
  curl_slist_free_all(m->res_undo);
  m->res_add = m->res_undo = NULL;
}

/* The previous run's entries come out of the DNS cache (shared by the multi's transfers),
 * this run's go in; the next run owes the undo of this one's. */
static int resolve_begin(dbx_multi *m) {
  const struct curl_slist *p;
  for (p = m->res_owed; p != NULL; p = p->next)
    if (append_line(&m->res_list, p->data) != 0) return -1;
  for (p = m->res_add; p != NULL; p = p->next)
    if (append_line(&m->res_list, p->data) != 0) return -1;
  return 0;
}

static void resolve_end(dbx_multi *m, int ran) {
  if (ran && m->res_list != NULL) {
    curl_slist_free_all(m->res_owed);
    m->res_owed = m->res_undo;
    m->res_undo = NULL;
  }
  curl_slist_free_all(m->res_add);
  curl_slist_free_all(m->res_undo);
  curl_slist_free_all(m->res_list);
  m->res_add = m->res_undo = m->res_list = NULL;
  dbx_buf_reset(&m->line, DBX_HTTP_KEEP_BUFFER);
}

/* ---- one transfer ---- */

/* Takes the slot off the multi; the handle stops pointing at the caller's body and the list. */
static void release(dbx_multi *m, slot *s) {
  curl_multi_remove_handle(m->multi, s->e.curl);
  if (s->resolve) curl_easy_setopt(s->e.curl, CURLOPT_RESOLVE, (struct curl_slist *)NULL);
  s->resolve = 0;
  dbx_easy_end(&s->e);
  s->item = NULL;
}

/* 0 when the request is in flight; otherwise it has failed (the slot stays free). */
static int start(dbx_multi *m, slot *s, dbx_mitem *it) {
  dbx_easy *e = &s->e;
  char method[33], msg[DBX_XFER_MSG];
  dbx_http_code code = dbx_http_check_request(&it->req, method, msg, sizeof msg);
  size_t at = 0, len;
  if (code != DBX_HTTP_OK) {
    dbx_mitem_fail(it, code, "%s", msg);
    return -1;
  }
  dbx_xfer_clear(&e->x);
  dbx_hlist_begin(&e->hdrs);
  if (it->lines != NULL && it->lines == s->lines && it->lines_len == s->lines_len && e->hdrs.list != NULL) {
    e->hdrs.cmp = e->hdrs.expect;            /* the very lines of this slot's previous request */
  } else {
    s->lines = NULL;
    while (at < it->lines_len) {
      len = strlen(it->lines + at);
      if (dbx_hlist_add_line(&e->hdrs, it->lines + at, len) != DBX_HTTP_OK) {
        dbx_mitem_fail(it, DBX_HTTP_NOMEM, "out of memory");
        return -1;
      }
      at += len + 1;
    }
  }
  code = dbx_easy_prepare(e, &it->req, method);
  if (code == DBX_HTTP_OK && m->res_list != NULL) {
    s->resolve = 1;
    if (curl_easy_setopt(e->curl, CURLOPT_RESOLVE, m->res_list) != CURLE_OK) code = DBX_HTTP_NOMEM;
  }
  if (code == DBX_HTTP_OK) curl_easy_setopt(e->curl, CURLOPT_PRIVATE, (void *)s);
  if (code == DBX_HTTP_OK && curl_multi_add_handle(m->multi, e->curl) != CURLM_OK) code = DBX_HTTP_NOMEM;
  if (code != DBX_HTTP_OK) {
    dbx_mitem_fail(it, code, "%s", code == DBX_HTTP_NOMEM ? "out of memory" : e->x.msg);
    if (s->resolve) curl_easy_setopt(e->curl, CURLOPT_RESOLVE, (struct curl_slist *)NULL);
    s->resolve = 0;
    dbx_easy_end(e);
    return -1;
  }
  s->item = it;
  s->lines = it->lines;
  s->lines_len = it->lines_len;
  return 0;
}

static void finish(dbx_multi *m, slot *s, CURLcode rc) {
  dbx_mitem *it = s->item;
  dbx_http_resp resp;
  dbx_http_code code = dbx_xfer_done(&s->e.x, s->e.curl, rc, &resp);
  release(m, s);
  if (code == DBX_HTTP_OK) {
    it->code = DBX_HTTP_OK;
    it->status = resp.status;
    it->reused = resp.reused;
    it->total_time = resp.total_time;
    it->http_version = resp.http_version;
    it->headers_count = resp.headers_count;
    dbx_xfer_take(&s->e.x, &it->body, &it->headers);
  } else {
    dbx_mitem_fail(it, code, "%s", s->e.x.msg);
  }
  dbx_xfer_clear(&s->e.x);
}

/* The run's time is up: what is in flight is cancelled, what was not sent never will be. */
static void cancel(dbx_multi *m, dbx_mitem *items, size_t next, size_t n, long timeout_ms) {
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    slot *s = m->slots[i];
    dbx_mitem *it = s->item;
    if (it == NULL) continue;
    release(m, s);
    dbx_xfer_clear(&s->e.x);
    dbx_mitem_fail(it, DBX_HTTP_TIMEOUT, "the batch's timeout (%ld ms) ran out before this request finished",
                   timeout_ms);
  }
  for (i = next; i < n; i++)
    if (items[i].code == DBX_HTTP_OK)
      dbx_mitem_fail(&items[i], DBX_HTTP_TIMEOUT, "the batch's timeout (%ld ms) ran out before this request "
                     "was sent", timeout_ms);
}

static slot *free_slot(dbx_multi *m, size_t upto) {
  size_t i;
  for (i = 0; i < upto; i++)
    if (m->slots[i]->item == NULL) return m->slots[i];
  return NULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Every transfer that is done: its outcome into its item, its slot free again. */
static size_t collect(dbx_multi *m) {
  CURLMsg *msg;
  int left;
  size_t done = 0;
  while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
    slot *s = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    if (s == NULL || s->item == NULL) continue;
    finish(m, s, msg->data.result);
    done++;
  }
  return done;
}

dbx_http_code dbx_multi_run(dbx_multi *m, dbx_mitem *items, size_t n, int concurrency, long timeout_ms) {
  size_t next = 0, running = 0, conc;
  double deadline = timeout_ms > 0 ? now_ms() + (double)timeout_ms : 0;
  if (concurrency < 1) concurrency = 1;
  if (concurrency > DBX_MULTI_MAX_CONCURRENCY) concurrency = DBX_MULTI_MAX_CONCURRENCY;
  conc = (size_t)concurrency < n ? (size_t)concurrency : n;
  if (n == 0) {
    resolve_end(m, 0);
    return DBX_HTTP_OK;
  }
  if (grow(m, conc) != 0 || resolve_begin(m) != 0) {
    resolve_end(m, 0);
    return DBX_HTTP_NOMEM;
  }
  for (next = 0; next < m->nslots; next++) m->slots[next]->lines = NULL;   /* pointers of an old run */
  next = 0;
  for (;;) {
    int still = 0;
    double left;
    CURLMcode mc;
    if (deadline > 0 && now_ms() >= deadline) {
      cancel(m, items, next, n, timeout_ms);
      break;
    }
    while (running < conc && next < n) {
      dbx_mitem *it = &items[next++];
      if (it->code == DBX_HTTP_OK && start(m, free_slot(m, conc), it) == 0) running++;
    }
    if (running == 0) break;                  /* nothing in flight and nothing left to start */
    mc = curl_multi_perform(m->multi, &still);
    ERR_clear_error();   /* libcurl's OpenSSL calls may leave entries in this thread's queue */
    if (mc != CURLM_OK) {
      /* the multi handle itself failed (out of memory): what is in flight cannot finish */
      size_t i;
      for (i = 0; i < conc; i++) {
        dbx_mitem *it = m->slots[i]->item;
        if (it == NULL) continue;
        release(m, m->slots[i]);
        dbx_xfer_clear(&m->slots[i]->e.x);
        dbx_mitem_fail(it, DBX_HTTP_NOMEM, "out of memory");
      }
      running = 0;
      continue;
    }
    running -= collect(m);
    if (running < conc && next < n) continue; /* start the next ones before waiting */
    if (running == 0) continue;
    left = deadline > 0 ? deadline - now_ms() : 1000;
    if (left > 1000) left = 1000;
    if (left > 0) curl_multi_poll(m->multi, NULL, 0, (int)left + 1, NULL);
  }
  resolve_end(m, 1);
  ERR_clear_error();
  return DBX_HTTP_OK;
}
