/*
 * relay_common.h -- small helpers shared by the relay's rule files (relay_policy.c,
 * relay_names.c, relay_argv.c, relay_env.c, relay_target.c). Internal: not part of
 * the interface relay_rules.h gives the relay, the cffi tests and the fuzz targets.
 *
 * Like every rule file, these make no system call, allocate nothing and keep no
 * state; every function is bounded by the lengths it is given.
 */
#ifndef MAILSLOT_RELAY_COMMON_H
#define MAILSLOT_RELAY_COMMON_H

#include <stddef.h>

/* Write one error line "<rule>: <detail>" into err (errlen bytes); NULL err is fine. */
void ms_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copy n bytes of s into dst (dstsize bytes) with a NUL; 0, or -1 if it does not fit. */
int ms_copy_bounded(char *dst, size_t dstsize, const char *s, size_t n);

/* A decimal id: 1 to 10 digits, no sign, value <= MS_ID_MAX. 0 ok, -1 not an id. */
int ms_parse_id(const char *s, size_t n, unsigned long *out);

/* 1 if one of the n bytes of s is a control character (< 0x20 or 0x7f). */
int ms_has_control(const char *s, size_t n);

/* 1 if s (n bytes) is [A-Za-z_][A-Za-z0-9_]* and at most MS_ENV_NAME_MAX long. */
int ms_env_name_is_valid(const char *s, size_t n);

/* ASCII classes, independent of the (empty) locale. */
static inline int ms_is_digit(int c) { return c >= '0' && c <= '9'; }
static inline int ms_is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int ms_is_space(int c) { return c == ' ' || c == '\t'; }

#endif
