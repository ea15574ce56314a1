"""The static userdb: templates for every user, allow_all_users, hostile names."""

import grp
import os
import pwd
import subprocess
import sys

import pytest

from mailslot import errors, userdb
from mailslot.errors import EX_TEMPFAIL, exit_code_for
from tests.support import REPO

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup").gr_gid
VMAIL = "uid=5000 gid=5000 home=/var/vmail/%d/%n allow_all_users=yes"


def static(args, **block):
    return [dict(block, driver="static", args=args)]


@pytest.mark.parametrize("name,expected", [
    ("ann@example.org", (5000, 5000, "/var/vmail/example.org/ann", {})),
    ("o'hara@example.org", (5000, 5000, "/var/vmail/example.org/o'hara", {})),
])
def test_every_user_gets_the_template(name, expected):
    user = userdb.lookup(name, static(VMAIL))
    assert (user.uid, user.gid, user.home, user.fields) == expected
    assert user.name == name and user.source == "userdb static"


def test_ids_by_name_and_extra_fields():
    user = userdb.lookup("ann@example.org", static(
        "uid=nobody gid=nogroup home=/srv/%u mail=maildir:~/M:LAYOUT=fs "
        "quota_rule=*:storage=%{domain} sieve_after=/etc/s/%n.sieve flag allow_all_users"))
    assert (user.uid, user.gid, user.home) == (NOBODY.pw_uid, NOGROUP, "/srv/ann@example.org")
    assert user.fields == {"mail": "maildir:~/M:LAYOUT=fs",
                           "quota_rule": "*:storage=example.org",
                           "sieve_after": "/etc/s/ann.sieve", "flag": ""}


@pytest.mark.parametrize("flag", ["allow_all_users=YES", "allow_all_users"])
def test_allow_all_users_spellings(flag):
    assert userdb.lookup("x", static(f"uid=5000 gid=5000 {flag}")).uid == 5000


@pytest.mark.parametrize("args", [
    "uid=5000 gid=5000 home=/var/vmail/%u",
    "uid=5000 gid=5000 home=/var/vmail/%u allow_all_users=no",
])
def test_without_allow_all_users_it_cannot_answer(args):
    # Dovecot asks the passdb; mailslot has none: a temporary failure, never a bounce.
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", static(args))
    assert "allow_all_users=yes" in str(info.value)
    assert exit_code_for(info.value) == EX_TEMPFAIL


@pytest.mark.parametrize("args,words", [
    ("uid=5000 gid=5000 home=/v/%q allow_all_users", ["%q"]),
    ("uid=no-such-user-mslt gid=5000 allow_all_users", ["no valid uid"]),
    ("gid=5000 home=/v/%u allow_all_users", ["no valid uid"]),
    ("uid=5000 gid=5000 home=v/%u allow_all_users", ["relative home"]),
])
def test_broken_templates_are_temporary(args, words):
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", static(args))
    for word in words:
        assert word in str(info.value)


# Issue 20.4: a recipient's value is a whole, safe path component or the name is
# nobody here: "..@ex.org" would make /var/vmail/ex.org itself the home, "ex.org@."
# the domain directory, "bob" (no domain) /var/vmail//bob = /var/vmail/bob.
@pytest.mark.parametrize("name", ["..@..", "ann@..", "..", "ann@./x", ".@example.org",
                                  "..@ex.org", "ex.org@.", "bob", "@ex.org",
                                  "ann@a/b", "a/b@ex.org", "x%h@ex.org", "x%%h@ex.org",
                                  "ann\0x@ex.org"])
def test_unsafe_path_components_from_the_name_are_refused(name):
    warnings = []
    assert userdb.lookup(name, static(VMAIL), warnings=warnings) is None
    assert any("refusing the home" in w for w in warnings), warnings


@pytest.mark.parametrize("name", ["..", "x@ex.org:INBOX=/elsewhere", "x%h@ex.org"])
def test_mail_location_is_checked_too(name):
    args = "uid=5000 gid=5000 mail=maildir:/var/vmail/%d/%n:INBOX=/x allow_all_users"
    warnings = []
    assert userdb.lookup(name, static(args), warnings=warnings) is None
    assert any("refusing the mail" in w for w in warnings), warnings
    assert userdb.lookup("ann@a", static(args)).fields["mail"] == "maildir:/var/vmail/a/ann:INBOX=/x"


def test_a_colon_from_the_name_stays_inside_its_path():
    """x@ex.org:INBOX=elsewhere must not add an INBOX= option to the location."""
    from mailslot.storage.location import parse_mail_location
    args = "uid=5000 gid=5000 mail=maildir:/var/vmail/%d/%n allow_all_users"
    user = userdb.lookup("x@ex.org:INBOX=elsewhere", static(args))
    assert user.fields["mail"] == "maildir:/var/vmail/ex.org::INBOX=elsewhere/x"
    loc = parse_mail_location(user.fields["mail"], home="/h")
    assert (loc.root, loc.inbox) == ("/var/vmail/ex.org:INBOX=elsewhere/x", None)


def test_template_dots_are_allowed():
    user = userdb.lookup("ann", static("uid=5000 gid=5000 home=/srv/../vmail/%u allow_all_users"))
    assert user.home == "/srv/../vmail/ann"


def test_chain_static_after_passwd():
    dbs = [{"driver": "passwd"}] + static(VMAIL)
    assert userdb.lookup("nobody", dbs).home == NOBODY.pw_dir
    assert userdb.lookup("virtual@example.org", dbs).home == "/var/vmail/example.org/virtual"


def test_default_and_override_fields_apply():
    user = userdb.lookup("ann", static("uid=5000 gid=5000 allow_all_users",
                                       default_fields="home=/d/%u mail=maildir:/def",
                                       override_fields="mail=maildir:/over"))
    assert (user.home, user.fields) == ("/d/ann", {"mail": "maildir:/over"})


def test_drivers_are_loaded_only_when_named():
    # The plain passwd path stays lean: no driver module, no sqlite3, no socket.
    code = ("import sys; sys.path.insert(0, %r); from mailslot import userdb; "
            "userdb.lookup('nobody', [{'driver': 'passwd'}]); "
            "a = any(m in sys.modules for m in ('mailslot.userdb.static', "
            "'mailslot.userdb.sql', 'mailslot.userdb.dovecot', 'sqlite3', 'socket')); "
            "userdb.lookup('x', [{'driver': 'static', 'args': 'uid=1 gid=1 allow_all_users'}]); "
            "print(a, 'mailslot.userdb.static' in sys.modules)"
            % os.path.join(REPO, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["False", "True"]
