/* Baseline for the batch benchmark: N GETs over one libcurl multi handle with CONC in flight at
 * all times, HTTP/2 by ALPN where offered (multiplexed on one connection: CURLPIPE_MULTIPLEX,
 * PIPEWAIT), waiting in curl_multi_poll; bodies discarded. The stack's own ceiling for
 * cfg:request_all, which does the same over dbxauth.core's multi handle.
 *
 *   raw_multi URL CAFILE N CONC "Header: value" ["Header: value" ...]
 *
 * Pass the headers dbxauth sends. CAFILE "" uses libcurl's default CA store. Exits non-zero on
 * any failure or non-200 status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_CONC 256

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static CURL *new_easy(const char *url, const char *cafile, struct curl_slist *hdrs, char *errbuf) {
  CURL *c = curl_easy_init();
  if (c == NULL) return NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (cafile[0] != '\0') curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
  return c;
}

static int run(const char *url, const char *cafile, long n, int conc, char **headers, int nheaders) {
  struct curl_slist *hdrs = NULL, *tmp;
  static char errbuf[MAX_CONC][CURL_ERROR_SIZE];
  CURL *easy[MAX_CONC];
  CURLM *m = curl_multi_init();
  long started = 0, done = 0;
  int k, running = 0, rc = 1;
  double t0, dt;

  memset(easy, 0, sizeof easy);
  if (m == NULL) return 1;
  curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  for (k = 0; k < nheaders; k++) {
    if ((tmp = curl_slist_append(hdrs, headers[k])) == NULL) goto out;
    hdrs = tmp;
  }
  if ((tmp = curl_slist_append(hdrs, "Expect:")) == NULL) goto out;
  hdrs = tmp;
  for (k = 0; k < conc; k++)
    if ((easy[k] = new_easy(url, cafile, hdrs, errbuf[k])) == NULL) goto out;

  t0 = now();
  for (k = 0; k < conc && started < n; k++, started++) curl_multi_add_handle(m, easy[k]);
  while (done < n) {
    CURLMsg *msg;
    int left;
    if (curl_multi_perform(m, &running) != CURLM_OK) goto out;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      long status = 0;
      CURL *c = msg->easy_handle;
      if (msg->msg != CURLMSG_DONE) continue;
      if (msg->data.result != CURLE_OK) {
        fprintf(stderr, "raw_multi: request %ld: %s\n", done + 1, curl_easy_strerror(msg->data.result));
        goto out;
      }
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
      if (status != 200) {
        fprintf(stderr, "raw_multi: request %ld: HTTP status %ld\n", done + 1, status);
        goto out;
      }
      done++;
      curl_multi_remove_handle(m, c);
      if (started < n) {
        curl_multi_add_handle(m, c);       /* the same request again on the freed handle */
        started++;
      }
    }
    if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  dt = now() - t0;
  printf("raw_multi: %ld requests, %d in flight, in %.3f s = %.1f req/s\n", n, conc, dt, dt > 0 ? (double)n / dt : 0.0);
  rc = 0;
out:
  for (k = 0; k < conc; k++)
    if (easy[k] != NULL) {
      curl_multi_remove_handle(m, easy[k]);
      curl_easy_cleanup(easy[k]);
    }
  curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  return rc;
}

int main(int argc, char **argv) {
  char *end;
  long n, conc;
  int rc;
  if (argc < 5) {
    fprintf(stderr, "usage: %s URL CAFILE N CONC \"Header: value\" ...\n", argv[0]);
    return 2;
  }
  n = strtol(argv[3], &end, 10);
  if (*argv[3] == '\0' || *end != '\0' || n < 1) {
    fprintf(stderr, "raw_multi: N must be a positive integer\n");
    return 2;
  }
  conc = strtol(argv[4], &end, 10);
  if (*argv[4] == '\0' || *end != '\0' || conc < 1 || conc > MAX_CONC) {
    fprintf(stderr, "raw_multi: CONC must be 1 .. %d\n", MAX_CONC);
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "raw_multi: cannot initialise libcurl\n");
    return 1;
  }
  rc = run(argv[1], argv[2], n, (int)conc, argv + 5, argc - 5);
  curl_global_cleanup();
  return rc;
}
