"""Dovecot %-variables: expansion, modifiers, errors, and parity with dovecot-lda."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from mailslot.variables import (RECIPIENT_KEYS, SETTINGS_KEYS, UnsafeValueError, expand,
                                expand_path, referenced, user_values)
from tests.support import free_uid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"

BOB = user_values("Bob.Smith@Example.COM", "/home/bob")

# (template, expansion for BOB)
CASES = [
    ("maildir:~/Maildir", "maildir:~/Maildir"),
    ("%u", "Bob.Smith@Example.COM"),
    ("%n|%d|%h", "Bob.Smith|Example.COM|/home/bob"),
    ("%{user}|%{username}|%{domain}|%{home}", "Bob.Smith@Example.COM|Bob.Smith|Example.COM|/home/bob"),
    ("maildir:/var/mail/%Ld/%Ln", "maildir:/var/mail/example.com/bob.smith"),
    ("%Lu", "bob.smith@example.com"),
    ("%Ud", "EXAMPLE.COM"),
    ("%L{username}", "bob.smith"),
    ("%%u is %u", "%u is Bob.Smith@Example.COM"),
    ("100%%", "100%"),
    ("%1n/%n", "B/Bob.Smith"),
    ("%2.1n", "b"),
    ("%-2.2n", "th"),
    ("%0.-2n", "Bob.Smi"),
    ("%.2n", "Bo"),
    ("%Rn", "htimS.boB"),
    ("%Dd", "Example,dc=COM"),
    ("%Mn", "df500219137bdb98dcdd8a3fb761138e"),
    ("%s", "lda"),
    ("[%l][%r]", "[][]"),
    ("%{userdb:mail:maildir:~/M}", "maildir:~/M"),
]


@pytest.mark.parametrize("template,expected", CASES)
def test_expand(template, expected):
    assert expand(template, BOB) == expected


def test_md5_case_is_really_md5():
    import hashlib

    assert expand("%Mn", BOB) == hashlib.md5(b"Bob.Smith").hexdigest()


def test_case_modifiers_are_ascii_only_like_dovecot():
    # Dovecot's t_str_lcase() leaves non-ASCII bytes alone, so %Lu of "ÄRGER@Ex.ORG"
    # names the directory "Ärger@ex.org" there; ours must spell it the same.
    values = user_values("ÄRGER@Ex.ORG", None)
    assert expand("%Lu", values) == "Ärger@ex.org"
    assert expand("%Uu", user_values("ärger@x", None)) == "äRGER@X"


def test_zero_padding_and_numbers():
    values = {"uid": "7", "user": "u"}
    assert expand("%04i", values) == "0007"
    assert expand("%04{uid}", {"uid": "12345"}) == "12345"  # never truncated
    assert expand("%Xi", {"uid": "255"}) == "ff"
    assert expand("%Xi", {"uid": "not-a-number"}) == "0"


def test_hash_modifiers_respect_width_and_padding():
    out = expand("%2.256Nu", BOB)
    assert len(out) == 2 and int(out, 16) < 256
    assert expand("%Nu", BOB) == expand("%Nu", BOB)
    assert int(expand("%3Hu", BOB), 16) < 3


@pytest.mark.parametrize("user,username,domain", [
    ("bob", "bob", ""),
    ("bob@example.org", "bob", "example.org"),
    ("a@b@c", "a", "b@c"),
    ("@x", "", "x"),
])
def test_user_values_split_like_dovecot(user, username, domain):
    values = user_values(user, None)
    assert (values["user"], values["username"], values["domain"]) == (user, username, domain)
    assert "home" not in values
    assert values["service"] == "lda"


def test_builtins():
    assert expand("%{pid}", {}) == str(os.getpid())
    assert expand("%p", {}) == str(os.getpid())
    assert expand("%{hostname}", {}) == os.uname().nodename
    assert expand("%{uid}/%{gid}", {}) == f"{os.geteuid()}/{os.getegid()}"
    assert expand("%{hostname}", {"hostname": "mx.example"}) == "mx.example"


def test_env_and_userdb_functions(monkeypatch):
    monkeypatch.setenv("MAILSLOT_TEST_VAR", "v1")
    monkeypatch.delenv("MAILSLOT_TEST_UNSET", raising=False)
    assert expand("%{env:MAILSLOT_TEST_VAR}", {}) == "v1"
    assert expand("[%{env:MAILSLOT_TEST_UNSET}]", {}) == "[]"
    assert expand("%{userdb:quota}", {"userdb:quota": "1G"}) == "1G"
    assert expand("%{userdb:quota:none}", {}) == "none"
    assert expand("%{userdb:quota:none}", {"userdb:quota": ""}) == ""


@pytest.mark.parametrize("template,words", [
    ("maildir:%", ["lone '%'", "%%"]),
    ("%L", ["lone '%'"]),
    ("%q", ["unknown variable", "'%q'"]),
    ("%{nosuch}", ["unknown variable", "%{nosuch}"]),
    ("%{user", ["unclosed"]),
    ("%{if;%u;eq;a;b;c}", ["not supported"]),
    ("%{sha256:user}", ["unknown variable"]),
])
def test_errors_name_the_problem(template, words):
    with pytest.raises(ValueError) as info:
        expand(template, BOB)
    for word in words:
        assert word in str(info.value)
    assert template in str(info.value)


@pytest.mark.parametrize("template", ["%h", "%{home}", "maildir:%h/Maildir", "%Lh"])
def test_home_missing_is_a_clear_error(template):
    with pytest.raises(ValueError) as info:
        expand(template, user_values("bob", None))
    assert "no home directory" in str(info.value)
    # An empty home is no home either (a userdb that returned none).
    with pytest.raises(ValueError):
        expand(template, user_values("bob", ""))


def test_lenient_mode_empties_unknown_but_not_malformed():
    assert expand("a%qb%{nosuch}c%h", {}, strict=False) == "abc"
    with pytest.raises(ValueError):
        expand("a%", {}, strict=False)


def test_other_short_key_tables():
    keys = {"$": "$", "m": "msgid"}
    assert expand("%m: %$", {"$": "saved", "msgid": "<x@y>"}, short_keys=keys) == "<x@y>: saved"
    with pytest.raises(ValueError):
        expand("%u", {"user": "x"}, short_keys=keys)


def test_referenced():
    assert referenced("maildir:%h/%Lu:INDEX=%{hostname}") == {"home", "user", "hostname"}
    assert referenced("/etc/100%%/users") == set()
    assert referenced("plain") == set()
    assert SETTINGS_KEYS["h"] == "home"
    with pytest.raises(ValueError):
        referenced("%q")


def test_values_are_not_reexpanded():
    # A value holding '%' is data, not a template: no double expansion.
    assert expand("%u", user_values("100%u@x", None)) == "100%u@x"


def test_import_is_light():
    code = ("import sys; sys.path.insert(0, %r); import mailslot.variables; "
            "heavy = {'re', 'json', 'logging', 'email', 'argparse', 'socket', 'tempfile', "
            "'shutil', 'datetime', 'subprocess', 'hashlib'}; "
            "print(sorted(heavy & set(sys.modules)))" % os.path.join(REPO, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


# --- parity with Dovecot's own var_expand -------------------------------------------

# Modifier and substring forms, applied to %e (the envelope sender) and %p (size) in
# deliver_log_format, which dovecot-lda expands with lib/var-expand.c.
PARITY_FORMAT = ("[%2.256Ne][%3RHe][%Me][%Le][%Ue][%1.3e][%-2.2e][%0.-2e][%Xp][%De]"
                 "[%04p][%-3e][%08.3e][%2.Ne][%He][%Ne][%Ee][%.2e][%5.e][%Te][%%]")


@pytest.mark.skipif(not os.path.exists(DOVECOT_LDA), reason="dovecot-lda not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="runs dovecot-lda as another uid (root needed)")
def test_modifiers_match_dovecot_lda():
    uid = free_uid()
    base = tempfile.mkdtemp(prefix="mailslot-var-")
    try:
        os.chmod(base, 0o755)
        home = os.path.join(base, "home")
        os.mkdir(home)
        os.chown(home, uid, uid)
        conf = os.path.join(base, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"log_path = {home}/err.log\ninfo_log_path = {home}/info.log\n"
                    f"mail_location = maildir:{home}/Maildir\nssl = no\n"
                    f"deliver_log_format = {PARITY_FORMAT}\n")
        sender = "Ab.C'd@Ex.Org"
        message = b"Subject: x\n\nbody\n"
        run = subprocess.run(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             DOVECOT_LDA, "-c", conf, "-f", sender],
            input=message, env={"HOME": home, "USER": "ghost", "PATH": "/usr/bin:/bin"},
            capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr
        with open(os.path.join(home, "info.log")) as f:
            line = f.read().splitlines()[-1]
        theirs = line.split(": Info: ", 1)[1]
        # The size dovecot-lda reports is the size of the message it saved.
        size = str(len(message))
        ours = expand(PARITY_FORMAT, {"from_envelope": sender, "size": size},
                      short_keys={"e": "from_envelope", "p": "size"})
        assert ours == theirs
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- expand_path: a recipient's value as a path component (issue 20.4) ---------------



@pytest.mark.parametrize("user, template, location", [
    ("..@ex.org", "maildir:/srv/vmail/%d/%n", True),
    ("ex.org@.", "maildir:/srv/vmail/%d/%n", True),
    ("user@..", "/srv/vmail/%d/%n", False),
    ("bob", "/srv/vmail/%d/%n", False),                 # empty component
    ("a/b@ex.org", "/srv/%n", False),
    ("x%h@ex.org", "maildir:/srv/%n", True),
    ("x@ex.org:INBOX=/elsewhere", "maildir:/srv/%d", True),
    ("x\0y", "/srv/%u", False),
    ("..", "/srv/%1u.", False),                         # %1u gives "." + "." = ".."
])
def test_unsafe_recipient_values_are_refused(user, template, location):
    with pytest.raises(UnsafeValueError):
        expand_path(template, user_values(user, "/h"), location=location)


@pytest.mark.parametrize("user, template, location, want", [
    ("ann@ex.org", "maildir:/srv/vmail/%d/%n", True, "maildir:/srv/vmail/ex.org/ann"),
    ("x@ex.org:INBOX=e", "maildir:/srv/%d/%n", True, "maildir:/srv/ex.org::INBOX=e/x"),
    ("..x@ex.org", "/srv/%n", False, "/srv/..x"),
    ("bob", "/srv/%n%d", False, "/srv/bob"),              # an empty part of a component
    ("ann", "%h/Maildir", False, "/h/Maildir"),           # home is not the recipient's
    ("ann", "/srv/100%%/%n", False, "/srv/100%/ann"),
])
def test_safe_values_expand(user, template, location, want):
    assert expand_path(template, user_values(user, "/h"), location=location) == want


def test_quote_percent_keeps_a_names_percent_literal():
    values = user_values("x%h", "/secret")
    once = expand("pm-%u", values, quote_percent=RECIPIENT_KEYS)
    assert once == "pm-x%%h" and expand(once, values) == "pm-x%h"
