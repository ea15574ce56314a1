/*
 * trusted.c -- open or check what only root may have chosen (see trusted.h): the
 * relay's policy file and passwd-file (ms_open_trusted), the engine's interpreter,
 * entry point and lookup entry (ms_open_program) and the package tree the entry
 * imports from (ms_check_tree).
 *
 * Security notes: whoever can change one of these runs code as every target (the
 * engine) or chooses the targets (the policy). So every path is walked from / one
 * component at a time with O_NOFOLLOW, judging each directory and the final object
 * by fstat of the fd we hold: a directory is passed through only if it is root-owned
 * and not writable by group or others (or root-owned and sticky, like /tmp: only an
 * entry's owner may rename or remove it, and every entry we pass is checked to be
 * root's). A symlink is never followed by the kernel: for a program path we read it
 * ourselves and follow it only when the link is root's and sits in a directory only
 * root may change (no sticky exception); for the policy and the passwd-file not at
 * all. The relay then execs the path as written: every name on it, and every link
 * it follows, can only be changed by root, so the kernel resolves what we checked.
 * A failed open or stat is a refusal, never a skipped check (RLIMIT_NOFILE tricks).
 */
#define _GNU_SOURCE
#include "trusted.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory we may pass through: root's, and nobody else can rename its entries. */
static int dir_is_trusted(const struct stat *st)
{
    if (!S_ISDIR(st->st_mode) || st->st_uid != 0)
        return 0;
    /* A sticky directory (/tmp) lets only an entry's owner rename or remove it. */
    return (st->st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st->st_mode & S_ISVTX) != 0;
}

/* A directory only root may change at all: where a followed symlink may live, and
 * every directory of the engine's tree (anyone may ADD a module to a sticky one). */
static int dir_is_root_only(const struct stat *st)
{
    return S_ISDIR(st->st_mode) && st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* A file nobody but root can have written. */
static const char *file_verdict(const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return "is not a regular file";
    if (st->st_uid != 0)
        return "is not owned by root";
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return "is writable by group or others";
    return NULL;
}

enum { WANT_FILE, WANT_READ, WANT_DIR };

static int open_root(struct stat *dst, const char **why)
{
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, dst) != 0 || !dir_is_trusted(dst)) {
        *why = fd < 0 ? "cannot open /" : "/ is not root-owned";
        if (fd >= 0)
            (void) close(fd);
        return -1;
    }
    return fd;
}

/* Walk path from /; follow symlinks as trusted.h says when follow is set. Returns an
 * fd of the final object: O_PATH (WANT_FILE, WANT_DIR) or open for reading
 * (WANT_READ), already judged; or -1 with why set. */
static int walk(const char *path, int follow, int want, struct stat *st, const char **why)
{
    char todo[PATH_MAX], next[PATH_MAX], comp[NAME_MAX + 1];
    const char *p, *slash, *v;
    struct stat dst;
    int dirfd, fd, links = 0;
    size_t n;

    if (path == NULL || path[0] != '/') {
        *why = "not an absolute path";
        return -1;
    }
    if (strlen(path) >= sizeof(todo)) {
        *why = "path too long";
        return -1;
    }
    memcpy(todo, path, strlen(path) + 1);
    if ((dirfd = open_root(&dst, why)) < 0)
        return -1;
    p = todo;
    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0') {
            /* The path names a directory (dirfd). */
            if (want == WANT_DIR) {
                *st = dst;
                return dirfd;
            }
            *why = "is not a regular file";
            goto fail;
        }
        slash = strchr(p, '/');
        n = slash ? (size_t) (slash - p) : strlen(p);
        if (n > NAME_MAX) {
            *why = "bad path component";
            goto fail;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n;
        /* The last name of a file we read is opened for reading right away (as
         * O_NONBLOCK|O_NOCTTY: a FIFO or a terminal planted there does nothing). */
        fd = openat(dirfd, comp,
                    (want == WANT_READ && *p == '\0' ? O_RDONLY | O_NONBLOCK | O_NOCTTY
                                                     : O_PATH)
                        | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ELOOP)
                *why = *p == '\0' ? "is a symlink" : "a directory on the path is a symlink";
            else if (errno == ENOENT)
                *why = *p == '\0' ? "does not exist" : "a directory on the path does not exist";
            else
                *why = "cannot open a component of the path";
            goto fail;
        }
        if (fstat(fd, st) != 0) {
            (void) close(fd);
            *why = "cannot stat a component of the path";
            goto fail;
        }
        if (S_ISLNK(st->st_mode)) {
            ssize_t len;
            if (!follow) {
                (void) close(fd);
                *why = *p == '\0' ? "is a symlink" : "a directory on the path is a symlink";
                goto fail;
            }
            /* Why: a symlink in a directory someone else may change, or someone
             * else's symlink, lets them choose what we run. */
            if (st->st_uid != 0 || !dir_is_root_only(&dst)) {
                (void) close(fd);
                *why = "a symlink on the path is not root's in a directory only root may change";
                goto fail;
            }
            len = readlinkat(fd, "", next, sizeof(next));
            (void) close(fd);
            if (++links > MS_TRUST_MAX_SYMLINKS || len <= 0 || (size_t) len >= sizeof(next)
                || (size_t) len + strlen(p) >= sizeof(next)) {
                *why = "a symlink on the path cannot be followed (unreadable or too many)";
                goto fail;
            }
            /* The walk goes on with the link's text, then the rest of our path. */
            memcpy(next + len, p, strlen(p) + 1);
            memcpy(todo, next, strlen(next) + 1);
            p = todo;
            if (todo[0] == '/') {
                (void) close(dirfd);
                if ((dirfd = open_root(&dst, why)) < 0)
                    return -1;
            }
            continue;
        }
        if (S_ISDIR(st->st_mode)) {
            if (!dir_is_trusted(st)) {
                (void) close(fd);
                *why = "a directory on the path is writable by others or not root-owned";
                goto fail;
            }
            (void) close(dirfd);
            dirfd = fd;
            dst = *st;
            continue;
        }
        (void) close(dirfd);
        dirfd = -1;
        /* Not a directory: it must be the last name, and a file only root wrote. */
        v = *p != '\0' ? "a component of the path is not a directory"
            : want == WANT_DIR ? "is not a directory" : file_verdict(st);
        if (v != NULL) {
            (void) close(fd);
            *why = v;
            return -1;
        }
        return fd;
    }
fail:
    if (dirfd >= 0)
        (void) close(dirfd);
    return -1;
}

int ms_open_trusted(const char *path, int path_only, struct stat *st, const char **why)
{
    return walk(path, 0, path_only ? WANT_FILE : WANT_READ, st, why);
}

int ms_open_program(const char *path, struct stat *st, const char **why)
{
    return walk(path, 1, WANT_FILE, st, why);
}

/* Append "/name" to where (wherelen bytes), keeping it NUL-terminated; returns the
 * old length so the caller can cut it back. */
static size_t where_push(char *where, size_t wherelen, const char *name)
{
    size_t old = strnlen(where, wherelen);

    if (wherelen > 0)
        (void) snprintf(where + old, wherelen - old, "/%s", name);
    return old;
}

/* Check every entry of the directory dirfd (an O_PATH fd), recursively. */
static int check_dir(int dirfd, int depth, size_t *entries, const char **why, char *where,
                     size_t wherelen)
{
    struct dirent *de;
    struct stat st;
    DIR *d;
    int fd, rc = 0;

    if (depth >= MS_TREE_MAX_DEPTH) {
        *why = "is nested too deep";
        return -1;
    }
    fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            (void) close(fd);
        *why = "cannot be read";
        return -1;
    }
    for (;;) {
        size_t old;
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                *why = "cannot be read";
                rc = -1;
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        old = where_push(where, wherelen, de->d_name);
        if (++*entries > MS_TREE_MAX_ENTRIES) {
            *why = "holds more entries than the relay checks";
            rc = -1;
            break;
        }
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            *why = "cannot be examined";
            rc = -1;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub;
            /* __pycache__ too: a .pyc someone else wrote is code run as every target. */
            if (!dir_is_root_only(&st)) {
                *why = "is a directory not root-owned or writable by group or others";
                rc = -1;
                break;
            }
            sub = openat(dirfd, de->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                *why = "cannot be opened";
                rc = -1;
                break;
            }
            rc = check_dir(sub, depth + 1, entries, why, where, wherelen);
            (void) close(sub);
            if (rc != 0)
                break;
        } else if (S_ISLNK(st.st_mode)) {
            *why = "is a symlink (the engine's tree may hold none)";
            rc = -1;
            break;
        } else {
            const char *v = file_verdict(&st);
            if (v != NULL) {
                *why = v;
                rc = -1;
                break;
            }
        }
        where[old] = '\0';
    }
    (void) closedir(d);
    return rc;
}

int ms_check_tree(const char *path, const char **why, char *where, size_t wherelen)
{
    struct stat st;
    size_t entries = 0;
    int fd, rc;

    if (wherelen > 0)
        where[0] = '\0';
    fd = walk(path, 1, WANT_DIR, &st, why);
    if (fd < 0)
        return -1;
    if (!dir_is_root_only(&st)) {
        (void) close(fd);
        *why = "is not root-owned or is writable by group or others";
        return -1;
    }
    rc = check_dir(fd, 0, &entries, why, where, wherelen);
    (void) close(fd);
    return rc;
}
