/* Baseline for the client benchmark: N sequential GETs on one libcurl easy handle (one
 * keep-alive connection). What dbxauth.core's client is compared against, so it sets the same
 * transport options and nothing more.
 *
 *   raw_curl [--fair] [--http1.1 | --http2] URL CAFILE N "Header: value" ["Header: value" ...]
 *
 * Bare (the default): bodies and headers discarded, as a loop that needs nothing back would.
 * --fair: the work dbxauth must do too: every header line and the body captured into buffers,
 * the status read, per request. --http1.1 (what dbxauth's sequential client uses) or --http2
 * (h2 by ALPN, libcurl's own default for https). Pass the headers dbxauth sends, so both put the
 * same request on the wire.
 *
 * CAFILE "" uses libcurl's default CA store. Exits non-zero on any failure or non-200 status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct buf {
  char  *data;
  size_t len, cap;
} buf;

static size_t append(buf *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    char *d;
    while (cap < b->len + n) cap *= 2;
    if ((d = realloc(b->data, cap)) == NULL) return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return n;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static size_t capture(char *p, size_t size, size_t n, void *ud) {
  return append(ud, p, size * n);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct opts {
  int  fair;
  long http_version;
} opts;

static int run(CURL *c, const opts *o, const char *url, const char *cafile, long n, char **headers, int nheaders) {
  struct curl_slist *hdrs = NULL, *tmp;
  char errbuf[CURL_ERROR_SIZE];
  buf body = { NULL, 0, 0 }, head = { NULL, 0, 0 };
  double t0, dt;
  long i;
  int rc = 1, k;

  for (k = 0; k < nheaders; k++) {
    if ((tmp = curl_slist_append(hdrs, headers[k])) == NULL) goto out;
    hdrs = tmp;
  }
  if ((tmp = curl_slist_append(hdrs, "Expect:")) == NULL) goto out;
  hdrs = tmp;

  errbuf[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, o->http_version);
  if (o->fair) {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, capture);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, capture);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);
  } else {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (cafile[0] != '\0') curl_easy_setopt(c, CURLOPT_CAINFO, cafile);

  t0 = now();
  for (i = 0; i < n; i++) {
    long status = 0;
    CURLcode res;
    body.len = head.len = 0;
    res = curl_easy_perform(c);
    if (res != CURLE_OK) {
      fprintf(stderr, "raw_curl: request %ld: %s\n", i + 1, errbuf[0] ? errbuf : curl_easy_strerror(res));
      goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      fprintf(stderr, "raw_curl: request %ld: HTTP status %ld\n", i + 1, status);
      goto out;
    }
  }
  dt = now() - t0;
  printf("raw_curl%s: %ld requests in %.3f s = %.1f req/s\n", o->fair ? " (fair)" : "", n, dt,
         dt > 0 ? (double)n / dt : 0.0);
  rc = 0;
out:
  curl_slist_free_all(hdrs);
  free(body.data);
  free(head.data);
  return rc;
}

int main(int argc, char **argv) {
  opts o = { 0, CURL_HTTP_VERSION_1_1 };
  CURL *c;
  char *end;
  long n;
  int rc, a = 1;

  for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
    if (strcmp(argv[a], "--fair") == 0) o.fair = 1;
    else if (strcmp(argv[a], "--http1.1") == 0) o.http_version = CURL_HTTP_VERSION_1_1;
    else if (strcmp(argv[a], "--http2") == 0) o.http_version = CURL_HTTP_VERSION_2TLS;
    else break;
  }
  if (argc - a < 4) {
    fprintf(stderr, "usage: %s [--fair] [--http1.1|--http2] URL CAFILE N \"Header: value\" ...\n", argv[0]);
    return 2;
  }
  n = strtol(argv[a + 2], &end, 10);
  if (*argv[a + 2] == '\0' || *end != '\0' || n < 1) {
    fprintf(stderr, "raw_curl: N must be a positive integer\n");
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c = curl_easy_init()) == NULL) {
    fprintf(stderr, "raw_curl: cannot initialise libcurl\n");
    return 1;
  }
  rc = run(c, &o, argv[a], argv[a + 1], n, argv + a + 3, argc - a - 3);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return rc;
}
