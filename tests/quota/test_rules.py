"""Quota rules: what parses and to what, checked against Dovecot 2.3's quota plugin.

Each case is quota settings and the default-rule limits mailslot must derive
(bytes, messages), or the error it must name. The parity test gives the same
settings to Dovecot (plugin block) and compares `doveadm quota get`'s Limit
columns, or that Dovecot refuses the same rule; mailslot's stricter cases
(trailing text after a unit) are marked and only checked on mailslot's side.
"""

import pytest

from mailslot.errors import ConfigError, exit_code_for
from mailslot.storage.quota_rules import parse_rules, wildcard_match

K, M, G, T = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4

# name: (settings, (bytes limit, count limit) or an error substring, checked by Dovecot)
CASES = {
    "storage-kilobytes-default": ({"quota_rule": "*:storage=10"}, (10 * K, 0), True),
    "storage-units": ({"quota_rule": "*:storage=2M"}, (2 * M, 0), True),
    "storage-bytes-unit": ({"quota_rule": "*:storage=10001b"}, (10001, 0), True),
    "storage-tera": ({"quota_rule": "*:storage=1t"}, (T, 0), True),
    "bytes-alias": ({"quota_rule": "*:bytes=10000"}, (10000, 0), True),
    "bytes-with-unit": ({"quota_rule": "*:bytes=1G"}, (G, 0), True),
    "messages": ({"quota_rule": "*:messages=10000"}, (0, 10000), True),
    "two-limits-colon": ({"quota_rule": "*:storage=10k:messages=5"}, (10 * K, 5), True),
    "second-default-rule-adds": ({"quota_rule": "*:storage=1M",
                                  "quota_rule2": "*:messages=4"}, (M, 4), True),
    "zero-is-unlimited": ({"quota_rule": "*:storage=0"}, (0, 0), True),
    "mailbox-rules-do-not-change-the-root": (
        {"quota_rule": "*:storage=1G", "quota_rule2": "Trash:storage=+100M",
         "quota_rule3": "Spam:ignore"}, (G, 0), True),
    "empty-limit-list": ({"quota_rule": "*:storage=1M", "quota_rule2": "INBOX:"},
                         (M, 0), True),
    "unknown-unit": ({"quota_rule": "*:storage=10x"}, "unknown unit", True),
    "not-a-number": ({"quota_rule": "*:storage=abc"}, "invalid storage limit", True),
    "unknown-limit-name": ({"quota_rule": "*:foo=1"}, "unknown rule limit name", True),
    "backend-is-unknown-in-2.3": ({"quota_rule": "*:storage=1M",
                                   "quota_rule2": "INBOX:storage=1M:backend=x"},
                                  "unknown rule limit name", True),
    "no-colon": ({"quota_rule": "*storage=1"}, "expected <mailbox>:<limit>", True),
    "mask-only": ({"quota_rule": "*:storage=1M", "quota_rule2": "INBOX"},
                  "expected <mailbox>:<limit>", True),
    "default-relative": ({"quota_rule": "*:storage=+1M"}, "cannot be relative", True),
    "default-negative": ({"quota_rule": "*:storage=-1M"}, "cannot be negative", True),
    "default-percent": ({"quota_rule": "*:storage=10%"}, "cannot be a percentage", True),
    "too-large": ({"quota_rule": "*:storage=9999999999999999999999"}, "invalid storage",
                  True),
    "grace-bad": ({"quota_rule": "*:storage=1M", "quota_grace": "abc"}, "quota_grace",
                  True),
    # Stricter than Dovecot, on purpose: Dovecot reads 10k and drops "messages=5".
    "space-instead-of-colon": ({"quota_rule": "*:storage=10k messages=5"},
                               "unknown unit", False),
}


def _expected_row(value, limit):
    return str((limit + 1023) // 1024) if value == "STORAGE" and limit else \
        (str(limit) if limit else "-")


@pytest.mark.parametrize("case", sorted(CASES))
def test_parse(case):
    settings, expected, _ = CASES[case]
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            parse_rules(settings)
        assert expected in str(info.value).lower(), str(info.value)
        # The setting is named, and a bad rule defers mail: never "no quota".
        assert info.value.key in settings and exit_code_for(info.value) == 75
        return
    rules = parse_rules(settings)
    assert (rules.default.bytes, rules.default.count) == expected


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][2]))
def test_same_as_dovecot(quota_env, case):
    settings, expected, _ = CASES[case]
    q = quota_env(rules=settings)
    proc = q.env.doveadm("-f", "tab", "quota", "get", check=False)
    if isinstance(expected, str):
        assert proc.returncode == 75, proc.stdout
        assert b"Invalid" in proc.stderr, proc.stderr
        ours = q.mailslot("quota", "get", "-c", q.conf, "-u", q.user)
        assert ours.returncode == 75 and b"quota_" in ours.stderr, ours.stderr
        return
    assert proc.returncode == 0, proc.stderr
    rows = q.doveadm_quota()
    limits = {row[1]: row[3] for row in rows}
    assert limits == {"STORAGE": _expected_row("STORAGE", expected[0]),
                      "MESSAGE": _expected_row("MESSAGE", expected[1])}
    assert q.mailslot_quota() == rows


def test_mailbox_rules_relative_to_the_default():
    rules = parse_rules({"quota_rule": "*:storage=10k:messages=100",
                         "quota_rule2": "Trash:storage=+50%",
                         "quota_rule3": "Tr*:storage=+1M",     # Trash matched first
                         "quota_rule4": "Junk:storage=-5k:messages=+10",
                         "quota_rule5": "Old:storage=5k",      # bare: taken as +5k
                         "quota_rule6": "Spam:ignore"})
    root = (10 * K, 100)
    assert rules.limits_for("INBOX", *root) == (10 * K, 100, True)
    assert rules.limits_for("Trash", *root) == (15 * K, 100, True)
    assert rules.limits_for("Trashcan", *root) == (10 * K + M, 100, True)
    assert rules.limits_for("Junk", *root) == (5 * K, 110, True)
    assert rules.limits_for("Old", *root) == (15 * K, 100, True)
    assert rules.limits_for("Spam", *root) == (0, 0, False)
    assert rules.limits_for("trash", *root) == (10 * K, 100, True)   # case matters
    # No default limit: unlimited whatever a mailbox rule says (Dovecot).
    assert rules.limits_for("Trash", 0, 0) == (0, 0, False)


def test_grace():
    assert parse_rules({}).grace_bytes(10 * K) == K                   # 10% default
    assert parse_rules({"quota_grace": "50%"}).grace_bytes(10 * K) == 5 * K
    assert parse_rules({"quota_grace": "3000"}).grace_bytes(10 * K) == 3000
    assert parse_rules({"quota_grace": "3k"}).grace_bytes(10 * K) == 3 * K


@pytest.mark.parametrize("name,mask,expected", [
    ("Trash", "Trash", True), ("Trash", "T*", True), ("Trash", "T?ash", True),
    ("Trash", "*h", True), ("Trash", "*", True), ("Trash", "trash", False),
    ("Trash", "Tr", False), ("a.b.c", "a*c", True), ("abc", "a*b*c*d", False),
    ("", "*", True), ("x" * 5000, "*" + "x*" * 50 + "y", False),
])
def test_wildcards(name, mask, expected):
    assert wildcard_match(name, mask) is expected


def test_a_bad_rule_in_the_file_names_its_line(tmp_path):
    from mailslot.config import apply_overrides, default_settings, load_settings
    conf = tmp_path / "mailslot.yaml"
    conf.write_text('mail_fsync: always\nquota_rule: "*:storage=1G"\n'
                    'quota_rule2: "Trash:storage=+1Q"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(str(conf), use_cache=False)
    assert info.value.line == 3 and info.value.key == "quota_rule2"
    assert "Trash:storage=+1Q" in str(info.value)
    # The same from a userdb field or -o.
    with pytest.raises(ConfigError) as info:
        apply_overrides(default_settings(), [("quota_grace", "ten")], source="userdb")
    assert info.value.key == "quota_grace" and "userdb" in str(info.value)
