#include "dbx_time.h"

#include <errno.h>
#include <time.h>

double dbx_now(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (double)time(NULL);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int dbx_sleep(double seconds) {
  struct timespec req, rem;
  if (!(seconds > 0)) return 0;
  req.tv_sec = (time_t)seconds;
  req.tv_nsec = (long)((seconds - (double)req.tv_sec) * 1e9);
  if (req.tv_nsec >= 1000000000L) req.tv_nsec = 999999999L;
  while (nanosleep(&req, &rem) != 0) {
    if (errno != EINTR) return -1;
    req = rem;
  }
  return 0;
}
