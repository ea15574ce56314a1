/*
 * hygiene.h -- what both privileged helpers do first, and how they refuse.
 *
 * ms_hygiene_start() puts the process in a known state before anything else runs:
 * umask 077, fds 0-2 open (on /dev/null if the caller closed them), every other fd
 * closed, every signal disposition back to default and every signal blocked,
 * RLIMIT_CORE 0 and not dumpable, and an empty environ (the caller's is returned so
 * the relay can copy allowed values out of it, and is never read by libc again).
 *
 * ms_refuse() ends the process with a sysexits code after one line on stderr and in
 * syslog (LOG_MAIL): "<program>: <rule>: <detail>". It never returns.
 *
 * ms_open_trusted() opens a file only if nobody but root can have chosen its content:
 * each directory from / down is root-owned and not group/world-writable (or sticky,
 * like /tmp, whose entries only their owner may replace), no component is a symlink,
 * and the file is regular, root-owned and not group/world-writable.
 */
#ifndef MAILSLOT_HYGIENE_H
#define MAILSLOT_HYGIENE_H

#include <stddef.h>
#include <sys/stat.h>

/* Put the process in a known state; returns the caller's environment. */
char **ms_hygiene_start(const char *progname);

/* Print "<program>: <message>" on stderr and syslog, then exit(code). */
void ms_refuse(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Open path read-only if it is trusted (see above); st gets its fstat.
 * Returns an fd (O_CLOEXEC), or -1 with why set to a static reason. With
 * path_only, the final file is opened O_PATH (for programs we only exec). */
int ms_open_trusted(const char *path, int path_only, struct stat *st, const char **why);

/* Read all of fd into buf (at most cap bytes); returns the length or -1 (also when
 * the file holds more than cap bytes). */
long ms_read_all(int fd, char *buf, size_t cap);

/* Unblock every signal (just before exec: the new program starts clean). */
void ms_unblock_signals(void);

#endif
