/*
 * trusted.h -- files and trees only root can have chosen: the relay's policy, its
 * passwd-file, the engine's interpreter, entry point and package tree.
 *
 * ms_open_trusted() opens a file only if nobody but root can have chosen its content:
 * each directory from / down is root-owned and not group/world-writable (or sticky,
 * like /tmp, whose entries only their owner may replace), no component is a symlink,
 * and the file is regular, root-owned and not group/world-writable.
 *
 * ms_open_program() does the same walk for a program path AS WRITTEN, but follows a
 * symlink when root placed it where only root can change it (Debian's
 * /usr/bin/python3 -> python3.11, merged-/usr's /lib -> usr/lib): the symlink is
 * owned by root and its directory is root-owned and not writable by group or others
 * (no sticky exception: anyone may add names to /tmp). What the link points to is
 * walked the same way from its own directory (or from / if absolute).
 *
 * ms_check_tree() checks a directory reached like a program, and everything in it:
 * every directory (also __pycache__) and file root-owned and not group/world-writable,
 * no symlink, no other file type, bounded in depth and entries.
 *
 * Each returns -1 with *why a static reason (and where, for a tree, the entry that
 * failed), never a partial verdict: a failed open or stat is a refusal.
 */
#ifndef MAILSLOT_TRUSTED_H
#define MAILSLOT_TRUSTED_H

#include <stddef.h>
#include <sys/stat.h>

/* Symlinks followed in one program path: the kernel's own limit (MAXSYMLINKS). */
#define MS_TRUST_MAX_SYMLINKS 40
/* A package tree: how deep, and how many entries in all (the engine has ~250). */
#define MS_TREE_MAX_DEPTH 16
#define MS_TREE_MAX_ENTRIES 20000

/* Open path read-only if it is trusted (see above); st gets its fstat.
 * Returns an fd (O_CLOEXEC), or -1 with why set to a static reason. With
 * path_only, the final file is opened O_PATH (for programs we only exec). */
int ms_open_trusted(const char *path, int path_only, struct stat *st, const char **why);

/* Check a program path as written, following only root's symlinks in root-only
 * directories; the final object must be a regular file, root-owned, not writable by
 * group or others. Returns an O_PATH fd of it, or -1 with why set. */
int ms_open_program(const char *path, struct stat *st, const char **why);

/* Check the directory path (reached as ms_open_program reaches a program) and every
 * entry under it. 0 trusted; -1 with why set and where holding the offending path
 * (relative to path) when there is one. */
int ms_check_tree(const char *path, const char **why, char *where, size_t wherelen);

#endif
