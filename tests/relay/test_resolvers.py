"""Where targets come from: NSS, a root-owned Dovecot passwd-file, a lookup child.

Every answer, whatever its source, is checked against the same ranges: a
passwd-file line or a lookup answer that maps a name to root is refused. Whatever
the source, the name asked for is -d made canonical by the policy's username_format,
and that canonical name is the -d the engine gets.
"""
import os

import pytest

from tests.relay.relaytest import ALICE, BOB, LOOKUP, MTA, assert_refused, report_of

PASSWD_LINES = [
    "# Dovecot passwd-file: user:password:uid:gid:gecos:home:shell:extra",
    "vuser1:{{PLAIN}}x:60001:60002::{home}/vuser1::userdb_quota_rule=*:storage=1G",
    "vuser2:{{PLAIN}}x:60003:60003::{home}/vuser2",
    "evilroot:{{PLAIN}}x:0:60001::{home}/evil::",
    "evilgid:{{PLAIN}}x:60004:0::{home}/evil::",
    "noid:{{PLAIN}}x::::{home}/noid::",
    "relhome:{{PLAIN}}x:60005:60005::relative/home::",
    "twice:x:60006:60006::{home}/a::",
    "twice:x:60007:60007::{home}/b::",
]


@pytest.fixture
def passwd_relay(relay):
    relay.passwd_file.write_text("\n".join(PASSWD_LINES).format(home=relay.homes) + "\n")
    os.chown(relay.passwd_file, 0, 0)
    os.chmod(relay.passwd_file, 0o640)
    relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file))
    return relay


def test_passwd_file_user_gets_its_uid_gid_and_only_its_gid(passwd_relay):
    rep = report_of(passwd_relay.run(["-d", "vuser1"]))
    assert rep["resuid"] == [60001] * 3
    assert rep["resgid"] == [60002] * 3
    assert rep["groups"] == [60002]
    assert rep["env"]["HOME"] == f"{passwd_relay.homes}/vuser1"


@pytest.mark.parametrize("user, code, rule", [
    ("evilroot", 75, "target-root"),
    ("evilgid", 75, "target-root"),
    ("noid", 75, "passwd-file"),
    ("relhome", 75, "passwd-file"),
    ("twice", 75, "passwd-file"),
    ("nobody-in-file", 67, "unknown-user"),
])
def test_passwd_file_refusals(passwd_relay, user, code, rule):
    assert_refused(passwd_relay.run(["-d", user]), code, rule)


def test_writable_passwd_file_is_refused(passwd_relay):
    os.chmod(passwd_relay.passwd_file, 0o664)
    assert_refused(passwd_relay.run(["-d", "vuser1"]), 75, "passwd-file-unsafe")


def test_passwd_file_owned_by_a_user_is_refused(passwd_relay):
    os.chown(passwd_relay.passwd_file, passwd_relay.uid(MTA), 0)
    assert_refused(passwd_relay.run(["-d", "vuser1"]), 75, "passwd-file-unsafe")


def test_passwd_file_resolver_ignores_nss(passwd_relay):
    assert_refused(passwd_relay.run(["-d", ALICE]), 67, "unknown-user")


LOOKUP_SCRIPT = '''\
import os, sys
# Runs as the policy's lookup user, never as root: prove it or answer nothing.
if os.getresuid() != ({uid}, {uid}, {uid}) or os.getgroups() != [{gid}]:
    sys.exit(70)
if os.environ.get("MAILSLOT_RELAY_LOOKUP") != "1" or "LD_PRELOAD" in os.environ:
    sys.exit(70)
if sys.argv[1] != "--lookup":
    sys.exit(64)
user = sys.argv[2]
answers = {{
    "lk-ok": "OK\\tuid=60008\\tgid=60009\\thome={home}/lk-ok\\n",
    "lk-root": "OK\\tuid=0\\tgid=60009\\thome=/root\\n",
    "lk-range": "OK\\tuid=50\\tgid=60009\\thome=/x\\n",
    "lk-garbage": "OK\\tuid=60008; rm -rf /\\n",
    "lk-two-lines": "OK\\tuid=60008\\tgid=60009\\thome=/x\\nOK\\tuid=0\\tgid=0\\thome=/\\n",
}}
if user == "lk-unknown":
    sys.stdout.write("NOTFOUND\\n")
    sys.exit(67)
if user == "lk-crash":
    sys.exit(1)
if user == "lk-config":
    # Answers only when the relay passed on the caller's -c (caller_config = yes).
    if sys.argv[3:] != ["-c", "/etc/mailslot/caller.yaml"]:
        sys.exit(70)
    user = "lk-ok"
sys.stdout.write(answers[user])
'''


@pytest.fixture
def lookup_relay(relay):
    script = relay.lookup_entry
    script.write_text(LOOKUP_SCRIPT.format(uid=relay.uid(LOOKUP), gid=relay.gid(LOOKUP),
                                           home=relay.homes))
    os.chmod(script, 0o644)
    relay.write_policy(resolver="lookup", lookup_user=LOOKUP, lookup_entry=str(script))
    return relay


def test_lookup_child_answer_is_used(lookup_relay):
    rep = report_of(lookup_relay.run(["-d", "lk-ok"], env={"LD_PRELOAD": "/tmp/x.so"}))
    assert rep["resuid"] == [60008] * 3
    assert rep["resgid"] == [60009] * 3
    assert rep["env"]["HOME"] == f"{lookup_relay.homes}/lk-ok"


@pytest.mark.parametrize("user, code, rule", [
    ("lk-root", 75, "target-root"),
    ("lk-range", 75, "target-uid-range"),
    ("lk-garbage", 75, "lookup-answer"),
    ("lk-two-lines", 75, "lookup-answer"),
    ("lk-unknown", 67, "unknown-user"),
    ("lk-crash", 75, "lookup"),
])
def test_lookup_child_answers_are_validated(lookup_relay, user, code, rule):
    assert_refused(lookup_relay.run(["-d", user]), code, rule)


def test_lookup_child_reads_the_callers_config(lookup_relay):
    lookup_relay.write_policy(resolver="lookup", lookup_user=LOOKUP,
                              lookup_entry=str(lookup_relay.lookup_entry),
                              caller_config="yes")
    rep = report_of(lookup_relay.run(["-c", "/etc/mailslot/caller.yaml", "-d", "lk-config"]))
    assert rep["resuid"] == [60008] * 3
    assert "/etc/mailslot/caller.yaml" in rep["argv"]
    # Without -c the child gets no -c, and this fixture then gives no answer.
    assert_refused(lookup_relay.run(["-d", "lk-config"]), 75, "lookup")


def test_lookup_user_root_is_refused(lookup_relay):
    lookup_relay.write_policy(resolver="lookup", lookup_user="root",
                              lookup_entry=str(lookup_relay.lookup_entry))
    assert_refused(lookup_relay.run(["-d", "lk-ok"]), 75, "policy-lookup-user")


# --- username_format: -d made canonical before it is resolved ----------------------------

def engine_user(rep):
    """The -d the engine got, and the name it was announced."""
    argv = rep["argv"]
    return argv[argv.index("-d") + 1], rep["env"]["MAILSLOT_RELAY_USER"]


def test_nss_name_is_lower_cased_with_username_format(relay):
    relay.write_policy(username_format="%Lu")
    rep = report_of(relay.run(["-d", BOB.upper()]))
    assert rep["resuid"] == [relay.uid(BOB)] * 3
    # The engine is asked for the canonical name, so its userdb looks up bob too.
    assert engine_user(rep) == (BOB, BOB)
    assert rep["env"]["USER"] == rep["env"]["LOGNAME"] == BOB


def test_without_username_format_the_name_is_byte_for_byte(relay):
    # The default ("%u") is what relays before the setting did: Bob is not bob.
    assert_refused(relay.run(["-d", BOB.upper()]), 67, "unknown-user")
    rep = report_of(relay.run(["-d", BOB]))
    assert engine_user(rep) == (BOB, BOB)


@pytest.mark.parametrize("fmt, user", [
    ("%Lu", "VUser1"),
    ("%Lu", "VUSER1"),
    ("%Ln", "VUser1@Example.ORG"),
    ("%n", "vuser1@example.org"),
])
def test_passwd_file_name_is_made_canonical(passwd_relay, fmt, user):
    passwd_relay.write_policy(resolver="passwd-file", passwd_file=str(passwd_relay.passwd_file),
                              username_format=fmt)
    rep = report_of(passwd_relay.run(["-d", user]))
    assert rep["resuid"] == [60001] * 3
    assert engine_user(rep) == ("vuser1", "vuser1")


def test_passwd_file_keeps_case_without_username_format(passwd_relay):
    assert_refused(passwd_relay.run(["-d", "VUser1"]), 67, "unknown-user")


def test_username_format_that_names_no_user_is_an_unknown_user(passwd_relay):
    passwd_relay.write_policy(resolver="passwd-file", passwd_file=str(passwd_relay.passwd_file),
                              username_format="%Ln")
    proc = passwd_relay.run(["-d", "@example.org"])
    assert_refused(proc, 67, "unknown-user")
    assert b"makes an empty name" in proc.stderr


@pytest.mark.parametrize("fmt", ["%{user}", "%Uu", "%1n", "bob", "%u%"])
def test_policy_with_an_unknown_username_format_refuses_to_run(relay, fmt):
    relay.write_policy(username_format=fmt)
    assert_refused(relay.run(["-d", BOB]), 75, "policy-value")


def test_lookup_child_is_asked_for_the_canonical_name(lookup_relay):
    lookup_relay.write_policy(resolver="lookup", lookup_user=LOOKUP,
                              lookup_entry=str(lookup_relay.lookup_entry),
                              username_format="%Lu")
    rep = report_of(lookup_relay.run(["-d", "LK-OK"]))
    assert rep["resuid"] == [60008] * 3
    assert engine_user(rep) == ("lk-ok", "lk-ok")


# --- recipient_delimiter: the detail is stripped before the name is resolved ------------

def test_nss_name_loses_its_detail_and_the_engine_keeps_it(relay):
    relay.write_policy(username_format="%Lu", recipient_delimiter="+")
    rep = report_of(relay.run(["-d", BOB.upper() + "+Lists"]))
    assert rep["resuid"] == [relay.uid(BOB)] * 3
    # Resolved and announced: the account. The engine's -d: formatted, detail kept.
    assert engine_user(rep) == (BOB + "+lists", BOB)
    assert rep["env"]["USER"] == rep["env"]["LOGNAME"] == BOB


def test_without_recipient_delimiter_the_detail_is_part_of_the_name(relay):
    # The default (no key): nothing is stripped, as before the setting existed.
    relay.write_policy(username_format="%Lu")
    assert_refused(relay.run(["-d", BOB + "+lists"]), 67, "unknown-user")


@pytest.mark.parametrize("user", ["+lists", "+", "+@example.org"])
def test_only_a_detail_is_an_unknown_user(relay, user):
    relay.write_policy(username_format="%Lu", recipient_delimiter="+")
    proc = relay.run(["-d", user])
    assert_refused(proc, 67, "unknown-user")
    assert b"no user before the recipient_delimiter detail" in proc.stderr


@pytest.mark.parametrize("value", ["+@", "%", "+ -", "+-_=#~!^&*.,;?|{}"])
def test_policy_with_a_bad_recipient_delimiter_refuses_to_run(relay, value):
    relay.write_policy(recipient_delimiter=value)
    assert_refused(relay.run(["-d", BOB]), 75, "policy-value")


@pytest.mark.parametrize("delims, user, engine", [
    ("+", "VUser1+Lists@Example.ORG", "vuser1+lists"),
    ("-+", "vuser1-a+b", "vuser1-a+b"),          # the earliest delimiter cuts
    ("+", "vuser1+", "vuser1+"),
])
def test_passwd_file_name_loses_its_detail(passwd_relay, delims, user, engine):
    passwd_relay.write_policy(resolver="passwd-file", passwd_file=str(passwd_relay.passwd_file),
                              username_format="%Ln", recipient_delimiter=delims)
    rep = report_of(passwd_relay.run(["-d", user]))
    assert rep["resuid"] == [60001] * 3
    assert engine_user(rep) == (engine, "vuser1")


def test_lookup_child_is_asked_for_the_name_without_its_detail(lookup_relay):
    lookup_relay.write_policy(resolver="lookup", lookup_user=LOOKUP,
                              lookup_entry=str(lookup_relay.lookup_entry),
                              username_format="%Lu", recipient_delimiter="+")
    rep = report_of(lookup_relay.run(["-d", "LK-OK+News"]))
    assert rep["resuid"] == [60008] * 3
    assert engine_user(rep) == ("lk-ok+news", "lk-ok")
