/* Baseline for the client benchmark: N sequential GETs on one libcurl easy handle
 * (one keep-alive connection), bodies discarded. What dbxauth.core's client is
 * compared against, so it sets the same transport options and nothing more.
 *
 *   raw_curl URL CAFILE N "Header: value" ["Header: value" ...]
 *
 * Pass the headers dbxauth sends, so both put the same request on the wire.
 *
 * CAFILE "" uses libcurl's default CA store. Exits non-zero on any failure or
 * non-200 status. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>

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

static int run(CURL *c, const char *url, const char *cafile, long n, char **headers, int nheaders) {
  struct curl_slist *hdrs = NULL, *tmp;
  char errbuf[CURL_ERROR_SIZE];
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
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (cafile[0] != '\0') curl_easy_setopt(c, CURLOPT_CAINFO, cafile);

  t0 = now();
  for (i = 0; i < n; i++) {
    long status = 0;
    CURLcode res = curl_easy_perform(c);
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
  printf("raw_curl: %ld requests in %.3f s = %.1f req/s\n", n, dt, dt > 0 ? (double)n / dt : 0.0);
  rc = 0;
out:
  curl_slist_free_all(hdrs);
  return rc;
}

int main(int argc, char **argv) {
  CURL *c;
  char *end;
  long n;
  int rc;

  if (argc < 5) {
    fprintf(stderr, "usage: %s URL CAFILE N \"Header: value\" [\"Header: value\" ...]\n", argv[0]);
    return 2;
  }
  n = strtol(argv[3], &end, 10);
  if (*argv[3] == '\0' || *end != '\0' || n < 1) {
    fprintf(stderr, "raw_curl: N must be a positive integer\n");
    return 2;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c = curl_easy_init()) == NULL) {
    fprintf(stderr, "raw_curl: cannot initialise libcurl\n");
    return 1;
  }
  rc = run(c, argv[1], argv[2], n, argv + 4, argc - 4);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return rc;
}
