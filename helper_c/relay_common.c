/*
 * relay_common.c -- helpers shared by the relay's rule files (see relay_common.h),
 * and ms_path_is_valid (relay_rules.h), which the policy, argv and target rules all
 * use for the paths they accept.
 *
 * What it trusts: nothing; every function is bounded by the lengths it is given.
 * Security notes: ms_path_is_valid is what keeps ".", ".." and "//" out of every
 * path the relay takes from the policy, argv, a passwd-file or the lookup child, so a
 * path always means what it says when the relay later walks it.
 */
#include "relay_common.h"
#include "relay_rules.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ms_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    (void) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copy n bytes of s into dst (size dstsize) with a NUL; 0, or -1 if it does not fit. */
int ms_copy_bounded(char *dst, size_t dstsize, const char *s, size_t n)
{
    if (n >= dstsize)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* A decimal id: 1 to 10 digits, no sign, value <= MS_ID_MAX. */
int ms_parse_id(const char *s, size_t n, unsigned long *out)
{
    unsigned long v = 0;
    size_t i;

    if (n == 0 || n > 10)
        return -1;
    for (i = 0; i < n; i++) {
        if (!ms_is_digit((unsigned char) s[i]))
            return -1;
        v = v * 10 + (unsigned long) (s[i] - '0');
    }
    if (v > MS_ID_MAX)
        return -1;
    *out = v;
    return 0;
}

int ms_path_is_valid(const char *s, int allow_space)
{
    size_t i, n;

    if (s == NULL || s[0] != '/')
        return 0;
    n = strnlen(s, MS_PATH_MAX);
    if (n >= MS_PATH_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == ' ' ? !allow_space : (c < 0x21 || c > 0x7e))
            return 0;
        if (c == '/' && i + 1 < n) {
            /* No empty, "." or ".." component: the path means what it says. */
            const char *next = s + i + 1;
            size_t rest = n - i - 1;
            if (next[0] == '/')
                return 0;
            if (next[0] == '.' && (rest == 1 || next[1] == '/'))
                return 0;
            if (next[0] == '.' && next[1] == '.' && (rest == 2 || next[2] == '/'))
                return 0;
        }
    }
    return 1;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most MS_ENV_NAME_MAX. */
int ms_env_name_is_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > MS_ENV_NAME_MAX || ms_is_digit((unsigned char) s[0]))
        return 0;
    for (i = 0; i < n; i++) {
        int c = (unsigned char) s[i];
        if (!ms_is_alpha(c) && !ms_is_digit(c) && c != '_')
            return 0;
    }
    return 1;
}

int ms_has_control(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}
