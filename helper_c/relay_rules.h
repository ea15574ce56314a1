/*
 * relay_rules.h -- the pure rules of mailslot-relay, one file per job:
 *   relay_policy.c  the policy parser and the id range check
 *   relay_names.c   the -d user name: validity, recipient_delimiter, username_format
 *   relay_argv.c    the dovecot-lda command line, and the engine's canonical argv
 *   relay_env.c     the engine's environment from an allow-list
 *   relay_target.c  passwd-file line, lookup answer, the target's groups and check
 *   relay_common.c  shared helpers (relay_common.h) and ms_path_is_valid
 *
 * Nothing declared here makes a system call, allocates memory or reads global state:
 * every function works on the buffers it is given and writes only into the structures
 * it is given. That is what lets the same code be called from pytest through cffi,
 * run under ASan/UBSan and valgrind, and fed to libFuzzer, exactly as the setuid
 * binary runs it.
 *
 * Every parser is strict: an unknown key, a bad value, an over-long field or a
 * duplicate is an error, never a guess. Errors are written as one line into the
 * caller's err buffer, and start with the short rule name the relay prints.
 */
#ifndef MAILSLOT_RELAY_RULES_H
#define MAILSLOT_RELAY_RULES_H

#include <stddef.h>

/* Limits. Each one bounds memory and work on input an untrusted caller controls. */
#define MS_POLICY_MAX_BYTES 65536      /* a policy file is a few hundred bytes */
#define MS_POLICY_LINE_MAX 1024        /* one "key = value" line */
#define MS_PATH_MAX 4096               /* Linux PATH_MAX, <linux/limits.h> */
#define MS_NAME_MAX 64                 /* group / lookup user names (useradd: 32) */
#define MS_USER_MAX 256                /* -d: RFC 5321 4.5.3.1.3, a path is <= 256 octets */
#define MS_USERNAME_FORMAT_MAX 64      /* username_format: a few %-sequences and literals */
#define MS_DELIMITER_MAX 16            /* recipient_delimiter: a set of characters; Dovecot's
                                          default is one ("+"), a site uses a few at most */
#define MS_ADDRESS_MAX 256             /* -a -r -f: RFC 5321 4.5.3.1.3 */
#define MS_MAILBOX_MAX 1024            /* -m: a mailbox name (Dovecot allows ~4 KiB paths) */
#define MS_SETTING_MAX 1024            /* -o key=value */
#define MS_MAX_SETTINGS 32             /* how many -o */
#define MS_MAX_ARGS 64                 /* argc bound for the whole command line */
#define MS_MAX_RANGES 16               /* ranges per target_uids / target_gids */
#define MS_MAX_CALLER_GROUPS 8
#define MS_MAX_EXTRA_GROUPS 8          /* target_extra_groups */
#define MS_MAX_PASS_ENV 32
#define MS_ENV_NAME_MAX 64
#define MS_ENV_VALUE_MAX 1024          /* a caller's variable value passed through */
#define MS_ENV_MAX 64                  /* entries in the engine's environment */
#define MS_ENV_BUF 16384               /* bytes for the engine's environment strings */
#define MS_MAX_TARGET_GROUPS 64        /* supplementary groups of a target */
#define MS_PASSWD_LINE_MAX 8192        /* one Dovecot passwd-file line */
#define MS_PASSWD_MAX_BYTES (64L * 1024 * 1024)  /* a passwd-file we agree to scan */
#define MS_LOOKUP_ANSWER_MAX 4200      /* "OK\tuid=N\tgid=N\thome=<path>\n" */
#define MS_ID_MAX 4294967294UL         /* (uid_t)-1 means "unchanged" to set*id(2) */

/* Where targets are resolved from. */
#define MS_RESOLVE_NSS 1
#define MS_RESOLVE_PASSWD_FILE 2
#define MS_RESOLVE_LOOKUP 3

/* Return codes of the argv validator: sysexits values, so the relay exits with them. */
#define MS_ARGS_OK 0
#define MS_ARGS_USAGE 64               /* EX_USAGE */
#define MS_ARGS_DENIED 77              /* EX_NOPERM: an option the policy does not allow */

struct ms_range {
    unsigned long lo, hi;              /* inclusive; lo >= 1 always */
};

struct ms_policy {
    char caller_groups[MS_MAX_CALLER_GROUPS][MS_NAME_MAX + 1];
    size_t n_caller_groups;
    struct ms_range target_uids[MS_MAX_RANGES];
    size_t n_target_uids;
    struct ms_range target_gids[MS_MAX_RANGES];
    size_t n_target_gids;
    char extra_groups[MS_MAX_EXTRA_GROUPS][MS_NAME_MAX + 1];  /* target_extra_groups */
    size_t n_extra_groups;
    char interpreter[MS_PATH_MAX];
    char entry[MS_PATH_MAX];
    char engine_tree[MS_PATH_MAX];     /* "" when absent: "python" beside the entry */
    int resolver;                      /* MS_RESOLVE_* */
    char passwd_file[MS_PATH_MAX];
    char lookup_user[MS_NAME_MAX + 1];
    char lookup_entry[MS_PATH_MAX];
    char pass_env[MS_MAX_PASS_ENV][MS_ENV_NAME_MAX + 1];
    size_t n_pass_env;
    int no_new_privs;                  /* 0/1 */
    int caller_config;                 /* 0/1: may callers give -c and -o */
    int caller_mail_path;              /* 0/1: may callers give -p */
    char username_format[MS_USERNAME_FORMAT_MAX + 1];  /* "%u" when the key is absent */
    char recipient_delimiter[MS_DELIMITER_MAX + 1];    /* "" (no stripping) when absent */
    unsigned long seen;                /* bit per key: duplicates are errors */
};

/* A validated dovecot-lda command line. Pointers point into the argv given. */
struct ms_args {
    const char *user;                  /* -d, required */
    const char *orig_rcpt;             /* -a */
    const char *final_rcpt;            /* -r */
    const char *sender;                /* -f */
    const char *config;                /* -c */
    const char *mailbox;               /* -m (may be "") */
    const char *mail_path;             /* -p */
    const char *settings[MS_MAX_SETTINGS];  /* -o */
    size_t n_settings;
    int no_create, subscribe, reject_stderr, keep_env;  /* -n -s -e -k */
};

/* The resolved target of a delivery. */
struct ms_target {
    char user[MS_USER_MAX + 1];
    unsigned long uid, gid;
    char home[MS_PATH_MAX];
    unsigned long groups[MS_MAX_TARGET_GROUPS];   /* exactly what setgroups gets */
    size_t n_groups;
};

/* Policy: parse a whole file already read into memory (buf need not end in NUL). */
int ms_policy_parse(const char *buf, size_t len, struct ms_policy *pol,
                    char *err, size_t errlen);

/* Names: check a username_format template. The relay knows a deliberately small
 * subset of Dovecot's %-variables (auth_username_format, var-expand): %u the whole
 * name, %n the part before the first '@' (all of it without one), %d the part after
 * it ("" without one), each optionally lower-cased with L (%Lu %Ln %Ld, ASCII only),
 * and literal bytes a user name may hold. It must use %u or %n. 0 = acceptable,
 * -1 with err set ("policy-value: username_format: ..."). */
int ms_username_format_check(const char *fmt, char *err, size_t errlen);

/* Names: expand fmt (see ms_username_format_check) for user into out (outlen bytes).
 * Returns 1: out holds a name ms_user_is_valid accepts; 0: the result names no user
 * (empty, longer than MS_USER_MAX or not a valid user name: err says which);
 * -1: fmt is not a template the relay knows (err set). */
int ms_username_format(const char *fmt, const char *user, char *out, size_t outlen,
                       char *err, size_t errlen);

/* Names: check a recipient_delimiter value: 1 to MS_DELIMITER_MAX bytes, each
 * printable ASCII other than '@' (it splits the domain off), '%' (it starts a
 * username_format variable) and space. 0 = acceptable, -1 with err set
 * ("policy-value: recipient_delimiter: ..."). */
int ms_recipient_delimiter_check(const char *delims, char *err, size_t errlen);

/* Names: the engine's strip_detail (pyside/mailslot/deliver.py), byte for byte: the
 * local part is what precedes the LAST '@' (all of user without one); for each
 * character of delims its first occurrence in the local part is found, one at offset
 * 0 is ignored (no user before it: nothing is cut for that character); the local part
 * is cut at the smallest offset found; the '@' and domain are kept. delims "" cuts
 * nothing. Writes the result into out (outlen bytes) and returns its length, or -1 if
 * user is NULL or does not fit. */
int ms_strip_detail(const char *delims, const char *user, char *out, size_t outlen);

/* Names: the two names of a -d user under the policy (recipient_delimiter, then
 * username_format, Dovecot's order).
 * lookup: username_format applied to the name without its detail: what the relay
 *   resolves and announces (USER, LOGNAME, MAILSLOT_RELAY_USER).
 * engine: what the engine gets as -d: username_format applied to the name WITH its
 *   detail, when the engine's own rule (strip, then format) turns that back into
 *   lookup; otherwise lookup itself. Both out buffers are outlen bytes.
 * Returns 1 (both set, both valid user names), 0 no such user (err says why: the
 * formatter's reasons, or a name that starts with a delimiter character: no user
 * before the detail), -1 a template the relay does not know (err set). */
int ms_user_names(const struct ms_policy *pol, const char *user, char *lookup,
                  char *engine, size_t outlen, char *err, size_t errlen);

/* Ranges: 1 if id lies in one of the n ranges and id is not 0, else 0. */
int ms_range_contains(const struct ms_range *ranges, size_t n, unsigned long id);

/* Strings from untrusted callers. 1 = acceptable, 0 = refused. */
int ms_user_is_valid(const char *s);
int ms_address_is_valid(const char *s);

/* Argv: validate argv[1..argc-1] as dovecot-lda options against the policy.
 * Returns MS_ARGS_OK, MS_ARGS_USAGE or MS_ARGS_DENIED. */
int ms_args_parse(int argc, char *const argv[], const struct ms_policy *pol,
                  struct ms_args *args, char *err, size_t errlen);

/* Argv: the engine's argv, canonical (one option, one value per element):
 * interpreter -I -S entry -d user [...]. out gets at most outmax pointers, the last
 * is NULL. Returns the count (without the NULL), or -1 if outmax is too small. */
int ms_args_engine_argv(const struct ms_args *args, const char *interpreter,
                        const char *entry, const char **out, size_t outmax);

/* Environment: 1 if a caller may never pass a variable of this name. */
int ms_env_name_forbidden(const char *name);

/* Environment: build the engine's environment. caller_env is the relay's own saved
 * environ (NULL-terminated; may be NULL). Strings go into buf, pointers into out
 * (NULL-terminated). Returns the number of entries, or -1 with err set. */
int ms_env_build(char *const caller_env[], const struct ms_policy *pol, int keep_env,
                 const struct ms_target *target, char *buf, size_t buflen,
                 char **out, size_t outmax, char *err, size_t errlen);

/* Targets: find user in a Dovecot-format passwd-file held in buf.
 * Returns 1 found (target filled), 0 not found, -1 error (err set). */
int ms_passwd_file_find(const char *buf, size_t len, const char *user,
                        struct ms_target *target, char *err, size_t errlen);

/* Targets: parse the lookup child's one-line answer (mailslot-lda --lookup USER):
 * "OK\tuid=N\tgid=N\thome=/path\n".
 * Returns 0 (target's uid, gid, home filled) or -1 (err set). */
int ms_lookup_answer_parse(const char *buf, size_t len, struct ms_target *target,
                           char *err, size_t errlen);

/* Targets: the groups the engine gets. target->groups (whatever the resolver found,
 * e.g. NSS's getgrouplist) becomes the primary gid first, then, in their order, only
 * those of its other groups that are among the n extra_gids (the policy's
 * target_extra_groups, resolved by the relay). */
void ms_target_groups(struct ms_target *target, const unsigned long *extra_gids, size_t n);

/* Targets: 0 if the target's uid, gid, groups and home are allowed by the policy,
 * else -1 with err naming the rule. uid 0 and gid 0 are never allowed, nor is a
 * group that is one of the caller groups (caller_gids, resolved by the relay) or
 * the mail group (mail_gid; 0 when the system has none), nor a home that is not an
 * absolute path. The relay answers every refusal with 75: the policy or the userdb
 * is wrong, not the caller, and the mail must wait until the administrator fixes it. */
int ms_target_check(const struct ms_policy *pol, const struct ms_target *target,
                    const unsigned long *caller_gids, size_t n_caller_gids,
                    unsigned long mail_gid, char *err, size_t errlen);

/* Paths: 1 if s is an absolute path of printable ASCII without "//", "/./" or "/../"
 * components and shorter than MS_PATH_MAX, else 0. allow_space admits ' '. */
int ms_path_is_valid(const char *s, int allow_space);

#endif
