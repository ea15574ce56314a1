"""Environment injection: what the caller sets never reaches the engine, -k or not.

The relay rebuilds the environment from an allow-list (fixed PATH/HOME/USER/LOGNAME,
its MAILSLOT_RELAY_* announcement, a zone-name TZ, the policy's pass_env, and with -k
the MTA's delivery variables); the hard deny list holds whatever the policy says.
"""
import pytest

from tests.relay.relaytest import ALICE, report_of

HOSTILE = {
    "LD_PRELOAD": "/tmp/evil.so",
    "LD_LIBRARY_PATH": "/tmp",
    "LD_AUDIT": "/tmp/evil.so",
    "PYTHONPATH": "/tmp/evil",
    "PYTHONSTARTUP": "/tmp/evil.py",
    "PYTHONINSPECT": "1",
    "PYTHONHOME": "/tmp/evil",
    "PYTHONWARNINGS": "error",
    "GCONV_PATH": "/tmp/evil",
    "LOCPATH": "/tmp/evil",
    "NLSPATH": "/tmp/evil",
    "TMPDIR": "/tmp/evil",
    "HOSTALIASES": "/tmp/evil",
    "RESOLV_HOST_CONF": "/tmp/evil",
    "GLIBC_TUNABLES": "glibc.malloc.check=3",
    "MALLOC_CHECK_": "3",
    "BASH_ENV": "/tmp/evil.sh",
    "MAILSLOT_RELAY_UID": "0",
    "MAILSLOT_RELAY_USER": "root",
    "PATH": "/tmp/evil:/usr/bin",
    "HOME": "/root",
    "USER": "root",
    "LANG": "../../tmp/evil",
    "LC_ALL": "../../tmp/evil",
    "MAIL_CONFIG": "/tmp/evil",
    "OPENSSL_CONF": "/tmp/evil.cnf",
}
SAFE_MTA = {"SENDER": "a@example.org", "RECIPIENT": "b@example.org",
            "ORIGINAL_RECIPIENT": "b+x@example.org", "EXTENSION": "x"}


@pytest.mark.parametrize("keep", [False, True], ids=["plain", "with-k"])
def test_hostile_variables_never_reach_the_engine(relay, keep):
    env = dict(HOSTILE, **SAFE_MTA)
    args = ["-d", ALICE] + (["-k"] if keep else [])
    rep = report_of(relay.run(args, env=env))
    got = rep["env"]
    for name in HOSTILE:
        if name in ("PATH", "HOME", "USER", "MAILSLOT_RELAY_UID", "MAILSLOT_RELAY_USER"):
            assert got[name] != HOSTILE[name], name
        else:
            assert name not in got, name
    assert got["MAILSLOT_RELAY_UID"] == str(relay.uid(ALICE))
    assert got["HOME"] == str(relay.homes / ALICE)
    assert rep["isolated"] == 1


def test_k_keeps_only_the_mta_delivery_variables(relay):
    env = dict(SAFE_MTA, SOMETHING_ELSE="x")
    plain = report_of(relay.run(["-d", ALICE], env=env))["env"]
    kept = report_of(relay.run(["-d", ALICE, "-k"], env=env))["env"]
    assert not set(SAFE_MTA) & set(plain)
    assert {k: kept[k] for k in SAFE_MTA} == SAFE_MTA
    assert "SOMETHING_ELSE" not in kept


def test_policy_pass_env_lets_named_variables_through(relay):
    relay.write_policy(pass_env="MSLT_TEST_VAR, DOVECOT_HINT")
    got = report_of(relay.run(["-d", ALICE], env={"MSLT_TEST_VAR": "v1", "OTHER": "x"}))["env"]
    assert got["MSLT_TEST_VAR"] == "v1"
    assert "OTHER" not in got and "DOVECOT_HINT" not in got


@pytest.mark.parametrize("name", ["LD_PRELOAD", "PYTHONPATH", "PATH", "MAILSLOT_RELAY_UID",
                                  "TMPDIR", "LC_ALL"])
def test_policy_cannot_allow_forbidden_variables(relay, name):
    relay.write_policy(pass_env=name)
    proc = relay.run(["-d", ALICE])
    assert proc.returncode == 75 and proc.stdout == b""
    assert b"mailslot-relay: policy-value:" in proc.stderr


@pytest.mark.parametrize("tz, passes", [("Europe/Paris", True), ("UTC", True),
                                        (":Europe/Paris", True),
                                        ("CET-1CEST,M3.5.0,M10.5.0/3", True),
                                        ("/etc/shadow", False), (":/etc/shadow", False),
                                        ("Europe/../../../etc/shadow", False),
                                        (":../../x", False), ("EST5EDT", True),
                                        ("UTC\nX", False)])
def test_tz_passes_only_as_a_zone_name_never_a_path(relay, tz, passes):
    got = report_of(relay.run(["-d", ALICE], env={"TZ": tz}))["env"]
    assert (got.get("TZ") == tz) is passes
