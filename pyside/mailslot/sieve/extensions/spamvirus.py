"""spamtest, spamtestplus (RFC 5235) and virustest: scores from filter headers.

The score comes from a header a spam/virus filter added, configured like
Pigeonhole: sieve_spamtest_status_header = "X-Spam-Score" or
"X-Spam-Status: score=([0-9.-]+)" (a regex whose first group is the value),
sieve_spamtest_status_type = score | strlen | text, and
sieve_spamtest_max_value / _max_header (or sieve_spamtest_text_valueN for
text). spamtest yields "0" (not configured or no header) or "1".."10",
:percent (spamtestplus) "0".."100"; virustest "0" or "1".."5". Not enabled by
default.
"""

from .. import syntax as S
from ..interpreter import TESTS
from ..match import match
from ..defs import CommandDef, TagDef
from .core import link_match_tags, match_spec


class PercentTag(TagDef):
    identifier = "percent"

    def validate(self, v, node, args, i):
        if not v.extension_loaded("spamtestplus"):
            v.error(args[i].line, "the spamtest test only accepts the :percent argument "
                    "when the spamtestplus extension is active")
            return None
        node.tags["percent"] = True
        return i + 1


class ScoreTest(CommandDef):
    is_test = True
    positional = 1

    def __init__(self, name):
        self.name = name

    def registered(self, v, reg):
        link_match_tags(v, reg)
        if self.name == "spamtest":
            v.register_tag(reg, PercentTag())

    def validate(self, v, node):
        arg = node.positional[0]
        if not v.check_positional(node, arg, "value", 1, S.STRING):
            return False
        keys = v.activate_list(node, arg)
        if keys is None:
            return False
        spec = match_spec(v, node, keys, arg)
        if spec is None:
            return False
        node.data = (keys, spec, bool(node.tags.get("percent")))
        return True

    def compile(self, c, node):
        return (self.name, node.line) + node.data


def load(v, name):
    if name in ("spamtest", "spamtestplus"):
        if "spamtest" not in v.commands or v.commands["spamtest"].definition is None:
            v.register_command(ScoreTest("spamtest"), name)
    else:
        v.register_command(ScoreTest("virustest"), name)
    return True


def _decimal(text):
    t = text.strip()
    sign = 1
    if t[:1] in "+-":
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    whole, _, frac = t.replace(",", ".").partition(".")
    if not whole.isdigit() and whole != "" or (whole == "" and not frac):
        raise ValueError(text)
    if len(whole) > 5 or len(frac) > 5 or (frac and not frac.isdigit()):
        raise ValueError(text)
    return sign * float((whole or "0") + "." + (frac or "0"))


def _header_spec(spec):
    """'Name' or 'Name: regex' -> (name, compiled regex or None)."""
    spec = spec.strip()
    i = 0
    while i < len(spec) and spec[i] not in ": \t":
        i += 1
    name = spec[:i]
    rest = spec[i:].strip()
    if not rest:
        return name, None
    if rest[0] != ":":
        raise ValueError("expecting ':'")
    from .regex import compile_key
    return name, compile_key(rest[1:].strip(), False)


def _extract(view, spec):
    name, rx = _header_spec(spec)
    values = view.decoded_values(name)
    if not values:
        return None
    value = values[0]
    if rx is None:
        return value
    m = rx.search(value)
    if m is None or rx.groups < 1 or m.group(1) is None:
        return None
    return m.group(1)


def score(it, kind, percent):
    s = it.ctx.settings
    prefix = "virustest" if kind == "virustest" else "spamtest"
    status_header = getattr(s, prefix + "_status_header")
    if not status_header:
        return "0"
    status_type = getattr(s, prefix + "_status_type") or "score"
    view = it.ctx.message
    max_text = 5 if kind == "virustest" else 10
    try:
        if status_type != "text":
            max_header = getattr(s, prefix + "_max_header")
            max_value = getattr(s, prefix + "_max_value")
            if max_header:
                raw = _extract(view, max_header)
                if raw is None:
                    return "0"
                maximum = _decimal(raw)
            elif max_value is not None:
                maximum = _decimal(str(max_value))
            else:
                return "0"
            if maximum == 0:
                return "0"
        else:
            maximum = max_text
        status = _extract(view, status_header)
        if status is None:
            return "0"
        if status_type == "score":
            value = _decimal(status)
        elif status_type == "strlen":
            if status and status != status[0] * len(status):
                return "0"
            value = len(status)
        else:
            texts = getattr(s, prefix + "_text_values")
            for n in range(max_text + 1):
                if texts.get(n) == status:
                    value = n
                    break
            else:
                return "0"
    except (ValueError, KeyError):
        return "0"
    ratio = 0 if value < 0 else (1 if value > maximum else value / maximum)
    if percent:
        return "%d" % int(ratio * 100 + 0.001)
    if kind == "virustest":
        return "%d" % int(ratio * 4 + 1.001)
    return "%d" % int(ratio * 9 + 1.001)


def _test(it, op):
    keys, spec, percent = op[2], op[3], op[4]
    return match(it, spec, [score(it, op[0], percent)], it.expand_list(keys))


TESTS["spamtest"] = _test
TESTS["virustest"] = _test
