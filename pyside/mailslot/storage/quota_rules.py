"""Quota rules in Dovecot 2.3's syntax: the limits a user has, per mailbox.

    rules = parse_rules(settings)       # ConfigError naming the setting
    limits = rules.limits_for("Trash", root_bytes, root_count)
    grace = rules.grace_bytes(root_bytes)

The settings (and the userdb fields of the same names, which override them):
    quota_rule, quota_rule2 ... quota_rule9   "<mailbox mask>:<limit>[:<limit>...]"
    quota_grace                               "10%" (default), "10M", "3000"

A limit is one of
    storage=<n>[unit]    bytes; no unit means kilobytes (Dovecot's)
    bytes=<n>[unit]      the same limit; no unit means bytes
    messages=<n>[unit]   the number of messages
    ignore               the mailbox is neither checked nor counted
units b, k, M, G, T (powers of 1024, either case). The mask "*" is the default rule:
the user's limits; 0 means no limit, and a default rule without a limit makes the
user's quota unlimited whatever the other rules say. Any other mask (Dovecot's
wildcards * and ?, matched case-sensitively against the mailbox's name as the
user sees it, e.g. "Trash", "Lists.abc" or "INBOX/Lists/abc") is relative to the
default rule: "Trash:storage=+100M" allows Trash 100 MB more, "-100M" less,
"+10%" ten per cent more; a bare number is taken as "+", as Dovecot does (it also
logs a warning). The first rule whose mask matches a mailbox is its rule. Two
rules with the same mask are one rule: the later one sets what it names.

quota_grace lets the last message that crosses the limit in: a message is
accepted while the user is under the limit and the message would not bring them
more than the grace over it; a percentage is of the default rule's byte limit.

Checked against Dovecot 2.3.19's quota plugin (tests/quota/test_rules.py): the
same rules parse, and the same ones fail. Where mailslot is stricter, on
purpose: text after a limit's unit ("*:storage=1G messages=10", a space where
Dovecot wants ':') is an error, not silently dropped; quota_rule2 ... are all
read even when one before them is empty (Dovecot stops at the first gap).

Errors: ConfigError (75: a typo defers mail, it never means "no quota") naming
the setting and the rule, with Dovecot's reason where it has one.

Security: the rules come from the administrator's settings or the userdb; they
are parsed, never used as paths or templates. Numbers are bounded to 63 bits.
"""

from ..errors import ConfigError

RULE_SETTINGS = ("quota_rule",) + tuple(f"quota_rule{i}" for i in range(2, 10))
DEFAULT_GRACE = "10%"
UNITS = {"": None, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
# Dovecot keeps limits in signed 64-bit integers.
MAX_LIMIT = 2 ** 63 - 1
# The default unit of each limit name (storage is in kilobytes).
LIMIT_NAMES = {"storage": ("bytes", 1024), "bytes": ("bytes", 1), "messages": ("count", 1)}


class Rule:
    """One mask's rule: ignore, or limits (absolute for "*", deltas otherwise)."""

    __slots__ = ("mask", "ignore", "bytes", "count", "bytes_percent", "count_percent")

    def __init__(self, mask):
        self.mask = mask
        self.ignore = False
        self.bytes = self.count = 0
        self.bytes_percent = self.count_percent = 0


class Rules:
    """The parsed rules of one user."""

    def __init__(self, default, mailbox_rules, grace, default_given):
        self.default = default              # Rule for "*"
        self.mailbox_rules = mailbox_rules  # [Rule], in the order given
        self.grace = grace                  # ("percent", n) or ("bytes", n)
        # Limits in the settings win over those a maildirsize file carries.
        self.default_given = default_given

    def rule_for(self, vname):
        """The first mailbox rule whose mask matches vname, or None."""
        for rule in self.mailbox_rules:
            if wildcard_match(vname, rule.mask):
                return rule
        return None

    def is_ignored(self, vname):
        rule = self.rule_for(vname)
        return rule is not None and rule.ignore

    def limits_for(self, vname, root_bytes, root_count):
        """(bytes limit, count limit, checked) for a save into vname; 0 = none.

        checked is False when nothing is to be checked: the default rule has no
        limit (unlimited user) or the mailbox is ignored."""
        if not (root_bytes or root_count):
            return 0, 0, False
        rule = self.rule_for(vname)
        if rule is None:
            return root_bytes, root_count, True
        if rule.ignore:
            return 0, 0, False
        limit_bytes = root_bytes + (root_bytes * rule.bytes_percent // 100
                                    if rule.bytes_percent else rule.bytes)
        limit_count = root_count + (root_count * rule.count_percent // 100
                                    if rule.count_percent else rule.count)
        return max(limit_bytes, 0), max(limit_count, 0), True

    def grace_bytes(self, root_bytes):
        kind, value = self.grace
        return root_bytes * value // 100 if kind == "percent" else value


def parse_rules(settings):
    """The Rules in settings' quota_rule* and quota_grace; ConfigError if one
    does not parse."""
    default = Rule("*")
    by_mask = {}
    default_given = False
    for key in RULE_SETTINGS:
        text = settings.get(key) or ""
        if not text:
            continue
        try:
            mask, rule = _parse_rule(text, default, by_mask)
        except ValueError as exc:
            raise ConfigError(f"invalid quota rule {text!r}: {exc}", key=key) from None
        if mask == "*":
            default_given = True
        elif mask not in by_mask:
            by_mask[mask] = rule
    grace_text = settings.get("quota_grace")
    if grace_text is None or grace_text == "":
        grace_text = DEFAULT_GRACE
    try:
        grace = parse_grace(str(grace_text))
    except ValueError as exc:
        raise ConfigError(f"invalid value {grace_text!r}: {exc}", key="quota_grace") from None
    return Rules(default, list(by_mask.values()), grace, default_given)


def check_setting(name, text):
    """ValueError (the reason) when one quota_rule* or quota_grace value does not
    parse; config.py calls it where the value is written."""
    if name == "quota_grace":
        parse_grace(str(text))
    elif name in RULE_SETTINGS:
        try:
            _parse_rule(text, Rule("*"), {})
        except ValueError as exc:
            raise ValueError(f"invalid quota rule {text!r}: {exc}") from None


def _parse_rule(text, default, by_mask):
    mask, colon, limits = text.partition(":")
    if not colon or not mask:
        raise ValueError("expected <mailbox>:<limit>")
    if mask == "*":
        rule = default
    else:
        rule = by_mask.get(mask) or Rule(mask)
    for item in limits.split(":"):
        if item == "":
            continue                    # "Trash:" names no limit (Dovecot accepts it)
        if item == "ignore":
            rule.ignore = True
            continue
        name, eq, value = item.partition("=")
        if name not in LIMIT_NAMES:
            raise ValueError(f"unknown rule limit name: {name}")
        _parse_limit(rule, name, value, relative=rule is not default)
    return mask, rule


def _parse_limit(rule, name, text, *, relative):
    field, default_unit = LIMIT_NAMES[name]
    sign = 1
    if text[:1] == "+":
        if not relative:
            raise ValueError("the default rule cannot be relative ('+')")
        text = text[1:]
    elif text[:1] == "-":
        if not relative:
            raise ValueError("a limit cannot be negative")
        sign, text = -1, text[1:]
    digits = len(text) - len(text.lstrip("0123456789"))
    if not digits:
        raise ValueError(f"invalid {name} limit: {text!r}")
    number, unit = int(text[:digits]), text[digits:]
    if unit == "%":
        if not relative:
            raise ValueError("the default rule cannot be a percentage")
        if number > MAX_LIMIT:
            raise ValueError(f"invalid {name} limit: {text!r}")
        setattr(rule, field, 0)
        setattr(rule, field + "_percent", sign * number)
        return
    if unit.lower() not in UNITS:
        raise ValueError(f"unknown unit {unit!r} in {name}={text}")
    value = number * (UNITS[unit.lower()] or default_unit)
    if value > MAX_LIMIT:
        raise ValueError(f"invalid {name} limit: {text!r} (too large)")
    setattr(rule, field, sign * value)
    setattr(rule, field + "_percent", 0)


def parse_grace(text):
    """("percent", n) or ("bytes", n) for quota_grace's "10%", "10M", "3000"."""
    text = text.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    if not digits:
        raise ValueError("expected a number with an optional unit (b, k, M, G, T) or %")
    number, unit = int(text[:digits]), text[digits:]
    if unit == "%":
        return ("percent", number)
    if unit.lower() not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    value = number * (UNITS[unit.lower()] or 1)
    if value > MAX_LIMIT:
        raise ValueError("too large")
    return ("bytes", value)


def wildcard_match(name, mask):
    """Dovecot's wildcard_match: '*' any run of characters, '?' one character."""
    # Iterative, with one backtrack point: linear in len(name) * len(mask) at worst.
    n = m = 0
    star, star_n = -1, 0
    while n < len(name):
        if m < len(mask) and (mask[m] == "?" or mask[m] == name[n]):
            n += 1
            m += 1
        elif m < len(mask) and mask[m] == "*":
            star, star_n = m, n
            m += 1
        elif star >= 0:
            star_n += 1
            n, m = star_n, star + 1
        else:
            return False
    while m < len(mask) and mask[m] == "*":
        m += 1
    return m == len(mask)
