/* Wall clock and sleeping, for token expiry and retry backoff. No Lua here. */
#ifndef DBX_TIME_H
#define DBX_TIME_H

/* Seconds since the Unix epoch, with sub-second precision. */
double dbx_now(void);

/* Sleep for the given seconds (fractions allowed); resumes after signals. 0 on success. */
int dbx_sleep(double seconds);

#endif
