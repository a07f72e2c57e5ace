#include "dbx_encode.h"

#include <stdint.h>
#include <string.h>

static const char B64_STD[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64_URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char HEX[] = "0123456789ABCDEF";

/* ---- base64 ---- */

size_t dbx_b64_encoded_len(size_t n, int url, int *ok) {
  size_t full = n / 3, rest = n % 3;
  *ok = 1;
  if (full > (SIZE_MAX - 4) / 4) { *ok = 0; return 0; }
  if (rest == 0) return full * 4;
  return full * 4 + (url ? rest + 1 : 4);
}

size_t dbx_b64_encode(char *dst, const unsigned char *src, size_t n, int url) {
  const char *alpha = url ? B64_URL : B64_STD;
  char *o = dst;
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    unsigned long v = (unsigned long)src[i] << 16 | (unsigned long)src[i + 1] << 8 | src[i + 2];
    *o++ = alpha[v >> 18 & 63];
    *o++ = alpha[v >> 12 & 63];
    *o++ = alpha[v >> 6 & 63];
    *o++ = alpha[v & 63];
  }
  if (n - i == 1) {
    unsigned long v = (unsigned long)src[i] << 16;
    *o++ = alpha[v >> 18 & 63];
    *o++ = alpha[v >> 12 & 63];
    if (!url) { *o++ = '='; *o++ = '='; }
  } else if (n - i == 2) {
    unsigned long v = (unsigned long)src[i] << 16 | (unsigned long)src[i + 1] << 8;
    *o++ = alpha[v >> 18 & 63];
    *o++ = alpha[v >> 12 & 63];
    *o++ = alpha[v >> 6 & 63];
    if (!url) *o++ = '=';
  }
  return (size_t)(o - dst);
}

size_t dbx_b64_decoded_max(size_t n) {
  return n / 4 * 3 + 3;
}

/* 0-63, or -1 for a byte outside the chosen alphabet (including '=' and NUL). */
static int b64_value(unsigned char c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

int dbx_b64_decode(unsigned char *dst, const char *src, size_t n, int url, size_t *outlen) {
  const unsigned char *s = (const unsigned char *)src;
  size_t pad = 0, i, o = 0;
  unsigned long acc = 0;
  int bits = 0;

  if (n > 0 && s[n - 1] == '=') { pad++; if (n > 1 && s[n - 2] == '=') pad++; }
  if (pad > 0 || !url) {
    if (n % 4 != 0) return -1;       /* padded input must be whole quanta */
  }
  n -= pad;
  if (n % 4 == 1) return -1;         /* one symbol cannot carry a whole byte */
  for (i = 0; i < n; i++) {
    int v = b64_value(s[i], url);
    if (v < 0) return -1;
    acc = (acc << 6 | (unsigned long)v) & 0xFFFFFF;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      dst[o++] = (unsigned char)(acc >> bits & 0xFF);
    }
  }
  /* padding must match what the symbols left over: 2 symbols -> "==", 3 -> "=" */
  if (pad > 0 && pad != 4 - n % 4) return -1;
  *outlen = o;
  return 0;
}

/* ---- percent-encoding ---- */

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

size_t dbx_pct_encoded_len(const unsigned char *src, size_t n, int form, int *ok) {
  size_t i, len = 0;
  *ok = 1;
  for (i = 0; i < n; i++) {
    size_t add = (unreserved(src[i]) || (form && src[i] == ' ')) ? 1 : 3;
    if (len > SIZE_MAX - add) { *ok = 0; return 0; }
    len += add;
  }
  return len;
}

size_t dbx_pct_encode(char *dst, const unsigned char *src, size_t n, int form) {
  char *o = dst;
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = src[i];
    if (unreserved(c)) {
      *o++ = (char)c;
    } else if (form && c == ' ') {
      *o++ = '+';
    } else {
      *o++ = '%';
      *o++ = HEX[c >> 4];
      *o++ = HEX[c & 15];
    }
  }
  return (size_t)(o - dst);
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int dbx_pct_decode(char *dst, const char *src, size_t n, int plus_is_space, size_t *outlen) {
  size_t i = 0, o = 0;
  while (i < n) {
    unsigned char c = (unsigned char)src[i];
    if (c == '%') {
      int hi, lo;
      if (n - i < 3) return -1;
      hi = hexval((unsigned char)src[i + 1]);
      lo = hexval((unsigned char)src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      dst[o++] = (char)(hi << 4 | lo);
      i += 3;
    } else {
      dst[o++] = (plus_is_space && c == '+') ? ' ' : (char)c;
      i++;
    }
  }
  *outlen = o;
  return 0;
}

/* ---- query strings ---- */

void dbx_query_init(dbx_query_iter *it, const char *s, size_t n) {
  it->p = s;
  it->end = s + n;
}

int dbx_query_next(dbx_query_iter *it, const char **key, size_t *klen,
                   const char **val, size_t *vlen) {
  while (it->p < it->end) {
    const char *start = it->p;
    const char *amp = memchr(start, '&', (size_t)(it->end - start));
    const char *stop = amp ? amp : it->end;
    const char *eq;
    it->p = amp ? amp + 1 : it->end;
    if (stop == start) continue;     /* "a=1&&b=2": empty pairs carry nothing */
    eq = memchr(start, '=', (size_t)(stop - start));
    *key = start;
    if (eq) {
      *klen = (size_t)(eq - start);
      *val = eq + 1;
      *vlen = (size_t)(stop - eq - 1);
    } else {
      *klen = (size_t)(stop - start);
      *val = stop;
      *vlen = 0;
    }
    return 1;
  }
  return 0;
}
