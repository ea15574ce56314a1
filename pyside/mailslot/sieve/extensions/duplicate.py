"""duplicate (RFC 7352): has this message (id) been seen before?

duplicate [:handle h] [:header name / :uniqueid value] [:seconds n] [:last]
(vnd.dovecot.duplicate, the draft it grew from, says :value for :uniqueid). The
value is the Message-ID by default. The check and the mark go through the host's
duplicate store (ctx.duplicate: check(key, period) -> bool, mark(key, period));
the mark is an action (" * track duplicate") carried out only when the run
succeeds. Without a store nothing is a duplicate (as in sieve-test).
"""

from .. import syntax as S
from ..interpreter import TESTS
from ..diagnostics import sanitize
from ..result import Action
from ..defs import CommandDef, TagDef, ValueTag
from .core import verify_header_names


class StringTag(ValueTag):
    """:handle, :header, :uniqueid; the last two name the value tested (one of them)."""

    def check(self, v, node, param):
        if self.identifier != "handle" and node.tags.get("value_source"):
            v.error(param.line, "conflicting :header and :uniqueid arguments specified "
                    "for the duplicate test")
            return False
        return True

    def accept(self, v, node, param, value):
        if self.identifier == "value":
            node.tags["uniqueid"] = value      # vnd.dovecot.duplicate's name for it
        if self.identifier == "header":
            verify_header_names(v, param, [value])
        if self.identifier != "handle":
            node.tags["value_source"] = True
        return True


class SecondsTag(TagDef):
    identifier = "seconds"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.NUMBER):
            return None
        seconds = param.value
        hi = v.env.settings.get("duplicate_max_period", 2 * 86400)
        if hi > 0 and seconds > hi:
            seconds = hi
            v.warning(param.line, "specified :seconds value '%d' is over the maximum"
                      % seconds)
        node.tags["seconds"] = int(seconds)
        return i + 2


class LastTag(TagDef):
    identifier = "last"

    def validate(self, v, node, args, i):
        node.tags["last"] = True
        return i + 1


class Duplicate(CommandDef):
    name = "duplicate"
    is_test = True
    positional = 0

    value_tag = "uniqueid"

    def registered(self, v, reg):
        v.register_tag(reg, SecondsTag())
        v.register_tag(reg, LastTag())
        for ident in ("header", self.value_tag, "handle"):
            v.register_tag(reg, StringTag(ident))

    def compile(self, c, node):
        t = node.tags
        return ("duplicate", node.line, t.get("handle"), t.get("header"),
                t.get("uniqueid"), t.get("seconds"), bool(t.get("last")))


class VndDuplicate(Duplicate):
    """vnd.dovecot.duplicate, the draft RFC 7352 grew from: :value for :uniqueid."""

    value_tag = "value"


def load(v, name):
    v.register_command(VndDuplicate() if name == "vnd.dovecot.duplicate"
                       else Duplicate(), name)
    v.post_validators.append((name, _check_conflict))
    return True


def _check_conflict(v, arg, required):
    """duplicate and vnd.dovecot.duplicate define the same test: not both."""
    both = ("duplicate", "vnd.dovecot.duplicate")
    if not all(name in v.loaded for name in both) or \
            v.ext_context.get("duplicate_conflict"):
        return True
    v.ext_context["duplicate_conflict"] = True
    # Reported where vnd.dovecot.duplicate is required, as Pigeonhole does.
    where = v.loaded["vnd.dovecot.duplicate"][1]
    v.error(where.line if where is not None else 0,
            "the (deprecated) vnd.dovecot.duplicate extension cannot be used "
            "together with the duplicate extension")
    return False


class DuplicateMark(Action):
    kind = "duplicate_mark"

    def __init__(self, location, key, handle, period, last):
        super().__init__(location)
        self.key = key
        self.handle = handle
        self.period = period
        self.last = last

    def print_lines(self, result):
        last = " last" if self.last else ""
        if self.handle is not None:
            return [" * track%s duplicate with handle: %s"
                    % (last, sanitize(self.handle, 128))], True
        return [" * track%s duplicate" % last], True

    def to_dict(self, result):
        return {"type": "duplicate_mark", "key": self.key.hex(), "period": self.period,
                "handle": self.handle, "last": self.last}


def _key(handle, value, last):
    import hashlib
    h = hashlib.md5()
    h.update(b"sieve duplicate")
    h.update(b"0" if last else b"+")
    if handle is not None:
        h.update(b"h-" + handle.encode("utf-8", "surrogateescape"))
    else:
        h.update(b"default")
    h.update(value.encode("utf-8", "surrogateescape"))
    return h.digest()


def test_duplicate(it, op):
    ctx = it.ctx
    handle = it.expand(op[2]) if op[2] is not None else None
    if op[4] is not None:
        value = it.expand(op[4])
    else:
        name = it.expand(op[3]) if op[3] is not None else "message-id"
        values = ctx.message.decoded_values(name) if op[3] is not None else \
            ctx.message.header_values(name)
        value = values[0].strip() if values else None
    if value is None:
        return False
    period = op[5] if op[5] is not None else int(ctx.settings.duplicate_default_period)
    # why: the validator bounds a literal period, but a compiled program may come
    # from a cache its user wrote (cache.py); the administrator's bound holds here.
    if not isinstance(period, int) or period < 0:
        period = int(ctx.settings.duplicate_default_period)
    hi = ctx.settings.duplicate_max_period
    if hi > 0 and period > hi:
        period = int(hi)
    last = op[6]
    key = _key(handle, value, last)
    seen = getattr(ctx, "duplicates_seen", None)
    if seen is None:
        seen = ctx.duplicates_seen = {}
    ck = (key, handle, last)
    if ck in seen:
        return seen[ck]
    store = ctx.duplicate
    duplicate = False
    if store is not None:
        duplicate = bool(store.check(key, period))
        if not duplicate and last:
            duplicate = bool(store.check(_key(handle, value, False), period))
    if not duplicate or last:
        it.result.add(it, DuplicateMark(it.location(), key, handle, period, last))
    seen[ck] = duplicate
    return duplicate


TESTS["duplicate"] = test_duplicate
