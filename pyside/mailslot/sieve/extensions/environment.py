"""environment (RFC 5183): the environment test.

Items: "domain", "host" (the hostname setting or gethostname()), "location"
("MDA" for the delivery, none in sieve-test), "phase" ("during"), "name"
("mailslot Sieve"), "version" and any sieve_environment_<name> setting; with
vnd.dovecot.environment also "vnd.dovecot.default-mailbox", "vnd.dovecot.username"
and "vnd.dovecot.config.<name>" (sieve_env_<name>), which ${env.<item>} reads too
(see vnd_environment.py). An unknown item has no value and matches nothing.
"""

from .. import syntax as S
from ..interpreter import TESTS
from ..match import match
from .match_tags import SubjectMatchTest


class Environment(SubjectMatchTest):
    name = "environment"
    subject_name = "name"
    subject_type = S.STRING


def load(v, name):
    v.register_command(Environment(), name)
    return True


def environment_item(it, name):
    ctx = it.ctx
    s = ctx.settings
    low = name.lower()
    if name in s.environment:
        return s.environment[name]
    if low == "host":
        return _hostname(s)
    if low == "domain":
        # Pigeonhole: the user's domain, else the hostname's domain part (when it
        # has a dot itself), else the bare hostname.
        user = ctx.user or ""
        if "@" in user and not user.endswith("@"):
            return user.split("@", 1)[1]
        host = _hostname(s)
        head, dot, rest = host.partition(".")
        if dot and "." in rest:
            return rest
        return host
    if low == "location":
        return getattr(ctx, "env_location", "MDA")
    if low == "phase":
        return getattr(ctx, "env_phase", "during")
    if low == "name":
        return "mailslot Sieve"
    if low == "version":
        from ... import __version__
        return __version__
    if low.startswith("vnd.dovecot.") and \
            "vnd.dovecot.environment" in it.program.extensions:
        return _vnd_item(ctx, name[len("vnd.dovecot."):])
    return None


def _vnd_item(ctx, name):
    """vnd.dovecot.environment's items (Pigeonhole's): default-mailbox (where
    keep files), username (the delivery's user), config.<name> (the
    sieve_env_<name> setting)."""
    low = name.lower()
    if low == "default-mailbox":
        return ctx.settings.default_mailbox
    if low == "username":
        return ctx.user or None
    if low.startswith("config."):
        return ctx.settings.env_config.get(name[len("config."):])
    return None


def _hostname(settings):
    if settings.hostname:
        return settings.hostname
    import socket
    return socket.gethostname()


def test_environment(it, op):
    value = environment_item(it, it.expand(op[2]))
    if value is None:
        # RFC 5183 4: an unknown item fails the test, even for :count "eq" "0".
        return False
    return match(it, op[4], [value], it.expand_list(op[3]))


TESTS["environment"] = test_environment
