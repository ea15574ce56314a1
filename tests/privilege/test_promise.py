"""The engine's check of the relay's promise (pyside/mailslot/privilege.py).

Each case starts a real `python3 -I -S` child as root, which sets its own groups,
gids and uids (and capabilities) to a given state, then calls
verify_relay_promise(env) with a given announcement and reports the outcome as JSON.
A broken promise must raise PrivilegeError (exit code 75); a kept one must leave the
process non-dumpable and named "mailslot-lda: <user>".
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

PYSIDE = Path(__file__).resolve().parents[2] / "pyside"
U, G, X = 60123, 60124, 60125        # a target uid, its gid, another group

CHILD = """
import json, os, sys
sys.path.insert(0, {pyside!r})
from mailslot.privilege import verify_relay_promise
from mailslot.errors import PrivilegeError, exit_code_for
spec = json.loads(sys.argv[1])
if spec.get("caps"):
    from mailslot.sitepath import enable_site_packages
    enable_site_packages()
    import prctl
    prctl.securebits.keep_caps = True
    for name in spec["caps"]:
        setattr(prctl.cap_inheritable, name, True)
os.setgroups(spec["groups"])
os.setresgid(*spec["resgid"])
os.setresuid(*spec["resuid"])
try:
    verify_relay_promise(spec["env"])
except PrivilegeError as exc:
    print(json.dumps({{"error": str(exc), "code": exit_code_for(exc)}}))
    sys.exit(0)
import prctl
with open("/proc/self/comm") as f:
    comm = f.read().strip()
print(json.dumps({{"ok": True, "dumpable": prctl.get_dumpable(), "comm": comm}}))
"""


def promise(user="alice", uid=U, gid=G, groups=(G,)):
    return {"MAILSLOT_RELAY_USER": user, "MAILSLOT_RELAY_UID": str(uid),
            "MAILSLOT_RELAY_GID": str(gid), "MAILSLOT_RELAY_HOME": "/home/alice",
            "MAILSLOT_RELAY_GROUPS": ",".join(map(str, groups))}


def run_child(env, resuid=(U, U, U), resgid=(G, G, G), groups=(G,), caps=()):
    if os.geteuid() != 0:
        pytest.skip("needs root: the child sets its own uids/gids (CI runs as root)")
    spec = {"env": env, "resuid": resuid, "resgid": resgid, "groups": list(groups),
            "caps": list(caps)}
    proc = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c",
                           CHILD.format(pyside=str(PYSIDE)), json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_kept_promise_passes_and_hardens_the_process():
    out = run_child(promise())
    assert out == {"ok": True, "dumpable": False, "comm": "mailslot-lda: a"}


def test_kept_promise_with_supplementary_groups():
    out = run_child(promise(groups=(X, G)), groups=(G, X))
    assert out.get("ok"), out


@pytest.mark.parametrize("case, env, state, words", [
    ("other-uid", promise(uid=U + 1), {}, "uids"),
    ("other-gid", promise(gid=G + 1, groups=(G + 1,)), {}, "gids"),
    ("saved-uid-root", promise(), {"resuid": (U, U, 0)}, "uids"),
    ("saved-gid-root", promise(), {"resgid": (G, G, 0)}, "gids"),
    ("real-uid-other", promise(), {"resuid": (U + 5, U, U)}, "uids"),
    ("extra-group", promise(), {"groups": (G, X)}, "groups"),
    ("missing-group", promise(groups=(G, X)), {}, "groups"),
    ("root-group-held", promise(), {"groups": (G, 0)}, "groups"),
    ("announced-root", promise(uid=0), {}, "root"),
    ("announced-root-group", promise(groups=(G, 0)), {}, "root"),
    ("uid-not-a-number", dict(promise(), MAILSLOT_RELAY_UID="60123x"), {}, "UID"),
    ("uid-missing", {k: v for k, v in promise().items() if k != "MAILSLOT_RELAY_UID"}, {},
     "UID"),
    ("groups-missing", {k: v for k, v in promise().items()
                        if k != "MAILSLOT_RELAY_GROUPS"}, {}, "GROUPS"),
    ("groups-malformed", dict(promise(), MAILSLOT_RELAY_GROUPS="60124;0"), {}, "GROUPS"),
    ("user-missing", dict(promise(), MAILSLOT_RELAY_USER=""), {}, "USER"),
])
def test_broken_promise_is_a_temporary_failure(case, env, state, words):
    out = run_child(env, **state)
    assert out.get("code") == 75, out
    assert words in out["error"], out


def test_capabilities_kept_through_the_drop_are_refused():
    # keep_caps keeps the permitted set across setresuid: exactly what a botched
    # relay could leave behind. The inheritable bit is refused too.
    out = run_child(promise(), caps=("net_bind_service",))
    assert out.get("code") == 75, out
    assert "capabilities held" in out["error"]
    assert "CAP_NET_BIND_SERVICE" in out["error"]


def test_running_as_root_breaks_any_promise():
    out = run_child(promise(), resuid=(0, 0, 0), resgid=(0, 0, 0), groups=(0,))
    assert out.get("code") == 75, out
