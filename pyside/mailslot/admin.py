"""The `mailslot` administration command.

    mailslot config [-c FILE] [-n]     print the effective settings (like doveconf -n:
                                       with -n only those that differ from defaults)
                                       and refresh the settings cache beside FILE
    mailslot user [-c FILE] USER       print what the userdb says of USER
    mailslot sieve-test ...            run a Sieve script on a message (Pigeonhole's
    mailslot sievec SCRIPT             layout); compile and check a script
    mailslot sieve-testsuite FILE      run one of Pigeonhole's .svtest files
                                       (vnd.dovecot.testsuite, test-only)
    mailslot quota get|recalc -u USER  a user's quota usage and limits as `doveadm
                                       quota get` prints them; rebuild maildirsize
                                       (storage/quota_tool.py; as root it becomes
                                       the user first)

Errors: a bad configuration prints the ConfigError (file, line, key) and exits 75,
as the delivery would; a usage mistake exits 64.

Security: runs as whoever calls it; it reads settings and user data but changes
nothing except the settings cache, which it writes only where the caller may, in
the directory it opened the file from (openat/renameat, keyed on that open file).
As root it refuses a configuration whose path another user could change (a
directory or the file not root's, writable by others, or a symlink): every user
trusts a root-owned cache (config.py, "the cache").
"""

import sys

from .errors import EX_USAGE, MailslotError, exit_code_for

USAGE = """usage: mailslot config [-c FILE] [-n]
       mailslot user [-c FILE] USER
       mailslot sieve-test [options] SCRIPT MESSAGE
       mailslot sievec SCRIPT
       mailslot sieve-testsuite [-F] [--json] FILE.svtest
       mailslot quota get|recalc [-c FILE] [-f tab] -u USER"""


def main(argv=None):
    """Dispatch a subcommand; return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EX_USAGE
    command, rest = argv[0], argv[1:]
    try:
        if command == "config":
            return config_command(rest)
        if command == "user":
            return user_command(rest)
        if command == "sieve-test":
            from .sieve.tool import sieve_test_main
            return sieve_test_main(rest)
        if command == "sievec":
            from .sieve.tool import sievec_main
            return sievec_main(rest)
        if command == "quota":
            from .storage.quota_tool import main as quota_main
            return quota_main(rest)
        if command == "sieve-testsuite":
            from .testsuite.tool import main as testsuite_main
            return testsuite_main(rest)
    except MailslotError as exc:
        print(f"mailslot {command}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    print(f"mailslot: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return EX_USAGE


def _take_config_option(args):
    """Return (config path or None, non-default-only flag, remaining args)."""
    path, only_changed, rest = None, False, []
    i = 0
    while i < len(args):
        if args[i] == "-c" and i + 1 < len(args):
            path = args[i + 1]
            i += 2
            continue
        if args[i] == "-n":
            only_changed = True
        else:
            rest.append(args[i])
        i += 1
    return path, only_changed, rest


def config_command(args):
    """Print the effective settings as YAML."""
    from .config import load_settings, default_settings, SCHEMA
    path, only_changed, rest = _take_config_option(args)
    if rest:
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    settings = load_settings(path)
    defaults = default_settings()
    if path:
        print(f"# mailslot settings from {path}")
    for name in SCHEMA:
        value = settings[name]
        if only_changed and value == defaults[name]:
            continue
        print(format_setting(name, value))
    return 0


def format_setting(name, value):
    """Return name and value as YAML text."""
    if isinstance(value, dict):
        lines = [f"{name}:"]
        for key, inner in value.items():
            lines.append(f"  {key}:")
            lines.extend(f"    {k}: {_scalar(v)}" for k, v in inner.items())
        return "\n".join(lines)
    if isinstance(value, list):
        lines = [f"{name}:"]
        for block in value:
            first = True
            for key, inner in block.items():
                lines.append(f"  {'- ' if first else '  '}{key}: {_scalar(inner)}")
                first = False
        return "\n".join(lines)
    return f"{name}: {_scalar(value)}"


def _scalar(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    plain = value and value.strip() == value and not any(
        ch in value for ch in ":#{}[],&*!|>'\"%@`") and value.lower() not in (
        "yes", "no", "true", "false", "on", "off", "null", "~") and not value[0].isdigit()
    if plain:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def user_command(args):
    """Print the userdb's answer for one user, like doveadm user."""
    from .config import load_settings
    from .recipient import find_user
    path, _, rest = _take_config_option(args)
    if len(rest) != 1:
        print(USAGE, file=sys.stderr)
        return EX_USAGE
    settings = load_settings(path)
    user = find_user(rest[0], settings)
    print(f"field\tvalue\nuser\t{user.name}\nuid\t{user.uid}\ngid\t{user.gid}\n"
          f"home\t{user.home}\nsource\t{user.source}")
    for warning in user.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for key, value in sorted(user.fields.items()):
        print(f"{key}\t{value}")
    return 0
