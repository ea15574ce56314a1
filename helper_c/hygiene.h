/*
 * hygiene.h -- what both privileged helpers do first, and how they refuse.
 *
 * ms_hygiene_start() puts the process in a known state before anything else runs:
 * umask 077, fds 1-2 open for writing (on /dev/null if the caller closed them: glibc
 * gives a set-id program a read-only /dev/null there), fd 0 readable when the program
 * needs it (else a refusal), every other fd closed, every signal disposition back to
 * default and every signal blocked, RLIMIT_CORE 0 and not dumpable, and an empty
 * environ (the caller's is returned so the relay can copy allowed values out of it,
 * and is never read by libc again).
 *
 * ms_refuse() ends the process with a sysexits code after one line on stderr and in
 * syslog (LOG_MAIL): "<program>: <rule>: <detail>". It never returns.
 *
 * Paths only root may have chosen (the policy, the engine) are checked in trusted.c.
 */
#ifndef MAILSLOT_HYGIENE_H
#define MAILSLOT_HYGIENE_H

#include <stddef.h>
#include <sys/stat.h>

/* Put the process in a known state; returns the caller's environment. need_stdin:
 * fd 0 is the program's input (the relay's message): closed or unreadable is 75. */
char **ms_hygiene_start(const char *progname, int need_stdin);

/* Print "<program>: <message>" on stderr and syslog, then exit(code). */
void ms_refuse(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Read all of fd into buf (at most cap bytes); returns the length or -1 (also when
 * the file holds more than cap bytes). */
long ms_read_all(int fd, char *buf, size_t cap);

/* Unblock every signal (just before exec: the new program starts clean). */
void ms_unblock_signals(void);

#endif
