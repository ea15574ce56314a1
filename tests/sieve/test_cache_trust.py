"""Who may have written a compiled script that a delivery runs (issue 20.6, 14).

The cache's CRC is no signature: whoever can write the file can forge it. So a
cache is read only from a place the script's owner controls, its extensions must
be enabled for the script, and a program runs only the commands of the
extensions it declares. Each forged cache here is well-formed (right magic, CRC,
settings and dependencies): only the trust rules keep it from running.
Deliveries run as an unprivileged uid through setpriv, as the engine does.
"""

import json
import os
import shutil
import subprocess
import sys
import zlib

import pytest

from mailslot import sieve
from mailslot.sieve import cache
from mailslot.sieve.diagnostics import Diagnostics
from mailslot.sieve.mail import RawMessage
from mailslot.sieve.program import source_key
from mailslot.sieve.script import compile_text, make_env, script_name
from mailslot.sieve.settings import SieveSettings
from tests.support import IS_ROOT, REPO, free_uid, needs_root, world_tempdir

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"
ENVELOPE = {"from": "a@example.org", "to": "b@example.com"}
FORGED = 'require ["fileinto", "editheader"];\naddheader "X-Forged" "yes";\n' \
    'fileinto "Stolen";\n'

# Runs sieve.run() as the delivery does; prints the result (and whether the
# compiler ran) as JSON. argv: script, home, settings (JSON), global (0/1).
RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from mailslot import sieve
import mailslot.sieve.script as script_mod
compiled = []
real = script_mod.compile_text
script_mod.compile_text = lambda *a, **k: compiled.append(1) or real(*a, **k)
from mailslot.sieve.mail import RawMessage
path, home, settings, is_global = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), \
    sys.argv[5] == "1"
res = sieve.run([path], RawMessage(b"From: a@example.org\nSubject: x\n\nbody\n"),
                {"from": "a@example.org", "to": "b@example.com"}, settings=settings,
                global_scripts={path} if is_global else set(), home=home)
out = res.to_dict()
out["compiled"] = bool(compiled)
out["header_fields"] = res.header_fields
print(json.dumps(out))
"""


def forged_cache(script, settings, home, is_global, source=FORGED,
                 extensions=None, tweak=None):
    """A well-formed cache for script whose program is `source` compiled with
    editheader on (extensions: override what the program declares; tweak(ops):
    edit the compiled ops as a user with a text editor could)."""
    sset = SieveSettings.from_mapping(settings, home)
    sset.home = home
    env = make_env(sset, global_script=is_global)
    forged_env = make_env(sset, enabled=set(env.enabled) | {"editheader", "fileinto"})
    program = compile_text(source, script_name(script), forged_env,
                           Diagnostics())
    assert program is not None
    st = os.stat(script)
    program.deps = [source_key(os.path.realpath(script), st)]
    data = cache.program_to_data(program)
    if extensions is not None:
        data["extensions"] = extensions
    if tweak is not None:
        tweak(data["ops"])
    payload = cache.encode({"settings": cache.settings_key(env, sset), "dirs": {},
                            "program": data})
    return cache.MAGIC + b"%08x\n" % zlib.crc32(payload) + payload


def run_as(uid, script, home, settings, is_global, env_home=None):
    proc = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "env", "-i",
         "HOME=%s" % (env_home or home), sys.executable, "-I", "-c", RUNNER,
         os.path.join(REPO, "pyside"), script, home, json.dumps(settings),
         "1" if is_global else "0"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def site():
    """A root-owned admin directory and a user's home, owned by a free uid."""
    if not IS_ROOT or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    base = world_tempdir("mslt-sieve-trust-")
    uid = free_uid(4300)
    admin = os.path.join(base, "admin")
    home = os.path.join(base, "home")
    os.mkdir(admin, 0o755)
    os.mkdir(home, 0o700)
    os.chown(home, uid, uid)
    script = os.path.join(admin, "before.sieve")
    with open(script, "w") as f:
        f.write('require "fileinto";\nfileinto "Admin";\n')
    os.chmod(script, 0o644)
    yield uid, script, home
    shutil.rmtree(base, ignore_errors=True)


def user_cache_path(script, home):
    """Where a cache for script goes in the user's cache directory."""
    name = "%s-%08x.msbin" % (os.path.basename(script)[:-len(".sieve")],
                              zlib.crc32(os.path.realpath(script).encode()))
    return os.path.join(home, ".cache", "mailslot", "sieve", name)


def beside(script):
    return script[:-len(".sieve")] + ".msbin"


def plant(home, path, data, uid):
    """Write path below home as the user would: owned by uid, in their dirs."""
    rel = os.path.relpath(os.path.dirname(path), home)
    d = home
    for part in rel.split(os.sep):
        d = os.path.join(d, part)
        os.makedirs(d, 0o700, exist_ok=True)
        os.chown(d, uid, uid)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, uid)
    os.chmod(path, 0o600)


def test_user_rewritten_admin_cache_is_not_run(site):
    """Issue 20.6: a sieve_before script's cache in the user's ~/.cache is the
    user's to rewrite; the delivery must not run it (nor its editheader)."""
    uid, script, home = site
    settings = {"sieve_before": script}
    data = forged_cache(script, settings, home, True)
    plant(home, user_cache_path(script, home), data, uid)
    out = run_as(uid, script, home, settings, True)
    assert out["actions"] == [{"type": "store", "mailbox": "Admin"}], out
    assert out["header_fields"] is None
    assert out["compiled"]
    # ... and the delivery saved no cache of the admin script where the user
    # could rewrite it (nor could it beside the script).
    assert open(user_cache_path(script, home), "rb").read() == data
    assert not os.path.exists(beside(script))


def test_root_compiled_admin_cache_is_used(site):
    """sievec as root puts a root-owned, readable cache beside the admin script;
    deliveries run it without compiling."""
    uid, script, home = site
    from mailslot.sieve.tool import sievec_main
    assert sievec_main([script]) == 0
    cpath = beside(script)
    st = os.stat(cpath)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o644
    # The delivery's settings name the user's own script location (its default),
    # which a script that includes nothing does not depend on.
    out = run_as(uid, script, home, {"sieve_before": script,
                                     "sieve": "file:~/sieve;active=~/.dovecot.sieve"},
                 True)
    assert out["actions"] == [{"type": "store", "mailbox": "Admin"}], out
    assert not out["compiled"]


def test_cache_in_a_directory_others_can_write_is_not_read(site):
    uid, script, home = site
    settings = {"sieve_before": script}
    cpath = beside(script)
    with open(cpath, "wb") as f:           # root-owned, but in a group-writable dir
        f.write(forged_cache(script, settings, home, True))
    os.chmod(cpath, 0o644)
    os.chmod(os.path.dirname(script), 0o775)
    os.chown(os.path.dirname(script), 0, uid)
    out = run_as(uid, script, home, settings, True)
    assert out["actions"] == [{"type": "store", "mailbox": "Admin"}], out
    assert out["compiled"]


def test_cache_home_is_the_users_not_HOME(site):
    """Issue 14: the user cache directory is below the home handed in (the
    userdb's), whatever $HOME says."""
    uid, _, home = site
    ro = os.path.join(os.path.dirname(home), "ro")
    os.mkdir(ro, 0o755)
    script = os.path.join(ro, "mine.sieve")   # the user's, beside it unwritable
    with open(script, "w") as f:
        f.write("keep;\n")
    os.chown(script, uid, uid)
    decoy = os.path.join(os.path.dirname(home), "decoy")
    os.mkdir(decoy, 0o700)
    os.chown(decoy, uid, uid)
    out = run_as(uid, script, home, {}, False, env_home=decoy)
    assert out["status"] == "success" and out["compiled"]
    cached = os.listdir(os.path.join(home, ".cache", "mailslot", "sieve"))
    assert len(cached) == 1 and cached[0].startswith("mine-"), cached
    assert os.stat(os.path.join(home, ".cache", "mailslot", "sieve",
                                cached[0])).st_uid == uid
    assert os.listdir(decoy) == []
    out = run_as(uid, script, home, {}, False, env_home=decoy)
    assert not out["compiled"]                 # the user's own cache is used


@pytest.mark.parametrize("declared", [["fileinto", "editheader"], ["fileinto"]])
def test_personal_cache_cannot_use_a_disabled_extension(tmp_path, declared):
    """editheader is off for this script: a cache that declares it is not used;
    one that hides it (declares fileinto only) cannot dispatch addheader even
    though editheader's module is loaded in the process."""
    import mailslot.sieve.extensions.editheader  # noqa: F401 (loaded, as by another script)
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")
    data = forged_cache(str(script), {}, None, False, extensions=declared)
    cpath = tmp_path / "s.msbin"
    cpath.write_bytes(data)
    os.chmod(cpath, 0o600)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    assert res.header_fields is None
    assert {"type": "store", "mailbox": "Stolen"} not in res.actions
    # declared: recompiled (explicit keep); hidden: the run fails (implicit keep).
    assert res.implicit_keep or res.actions == [{"type": "keep", "mailbox": "INBOX"}]


@pytest.mark.parametrize("ext, source", [
    ("fileinto", 'require "fileinto";\nfileinto "Stolen";\n'),
    ("envelope", 'require ["envelope", "fileinto"];\n'
                 'if envelope :is "from" "a@example.org" { fileinto "Stolen"; }\n'),
])
def test_core_runtime_runs_fileinto_and_envelope_only_when_declared(tmp_path, ext,
                                                                     source):
    """fileinto's and envelope's handlers live in core_runtime, which every run
    loads: a cache whose program uses one without declaring it fails instead of
    running it (interpreter.REQUIRES), as for an extension in its own module."""
    settings = {}
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")
    declared = [e for e in ("fileinto", "envelope") if e != ext]
    data = forged_cache(str(script), settings, None, False, source=source,
                        extensions=declared)
    cpath = tmp_path / "s.msbin"
    cpath.write_bytes(data)
    os.chmod(cpath, 0o600)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE, settings=settings)
    assert {"type": "store", "mailbox": "Stolen"} not in res.actions
    assert res.status != "success" and res.implicit_keep


@needs_root
def test_cache_of_another_owner_is_not_read(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")
    cpath = tmp_path / "s.msbin"
    cpath.write_bytes(forged_cache(str(script), {}, None, False))
    os.chmod(cpath, 0o600)
    st = os.stat(script)
    assert cache._read_file(str(cpath), cache._owners(st)) is not None
    os.chown(cpath, 65534, 65534)
    assert cache._read_file(str(cpath), cache._owners(st)) is None
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    assert res.header_fields is None
    assert res.actions == [{"type": "keep", "mailbox": "INBOX"}]


def test_personal_include_dir_is_below_the_home_handed_in(tmp_path, monkeypatch):
    """Issue 14: `include :personal` finds ~/sieve in the delivery's home, not
    in $HOME (the core reads no environment)."""
    for who in ("home", "decoy"):
        (tmp_path / who / "sieve").mkdir(parents=True)
        (tmp_path / who / "sieve" / "lib.sieve").write_text(
            'require "fileinto";\nfileinto "From-%s";\n' % who)
    monkeypatch.setenv("HOME", str(tmp_path / "decoy"))
    script = tmp_path / "home" / "main.sieve"
    script.write_text('require "include";\ninclude :personal "lib";\n')
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE,
                    home=str(tmp_path / "home"))
    assert res.actions == [{"type": "store", "mailbox": "From-home"}], res.errors


@pytest.mark.parametrize("period", [1, 0, -5, "1"])
def test_users_own_cache_cannot_lower_the_vacation_period(tmp_path, period):
    """A user may write the cache of their own script, but the administrator's
    sieve_vacation_min_period still holds (it is checked again at run time)."""
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")

    def tweak(ops):
        assert ops[0][0] == "vacation"
        ops[0][2]["seconds"] = period

    data = forged_cache(str(script), {}, None, False, extensions=["vacation"],
                        source='require "vacation";\nvacation :days 1 "away";\n',
                        tweak=tweak)
    (tmp_path / "s.msbin").write_bytes(data)
    os.chmod(tmp_path / "s.msbin", 0o600)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    vacation = [a for a in res.actions if a["type"] == "vacation"]
    assert vacation and vacation[0]["seconds"] == 86400, res.to_dict()


def test_users_own_cache_cannot_raise_the_duplicate_period(tmp_path):
    """sieve_duplicate_max_period holds at run time too."""
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")

    def tweak(ops):
        test = ops[0][2][0][0]
        assert test[0] == "duplicate"
        ops[0][2][0] = (test[:5] + (10 ** 9,) + test[6:],) + tuple(ops[0][2][0][1:])

    data = forged_cache(str(script), {}, None, False, extensions=["duplicate"],
                        source='require "duplicate";\n'
                               'if duplicate :uniqueid "x" :seconds 100 { discard; }\n',
                        tweak=tweak)
    (tmp_path / "s.msbin").write_bytes(data)
    os.chmod(tmp_path / "s.msbin", 0o600)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    marks = [a for a in res.actions if a["type"] == "duplicate_mark"]
    assert marks and marks[0]["period"] == 2 * 24 * 3600, res.to_dict()


def test_admin_script_including_personal_scripts_is_not_shared(tmp_path):
    """A global script that includes :personal depends on whose home it ran
    for: one user's compiled includes never serve another user."""
    admin = tmp_path / "admin"
    admin.mkdir()
    script = admin / "before.sieve"
    script.write_text('require "include";\ninclude :personal :optional "lib";\n')
    for who in ("alice", "bob"):
        (tmp_path / who / "sieve").mkdir(parents=True)
        (tmp_path / who / "sieve" / "lib.sieve").write_text(
            'require "fileinto";\nfileinto "%s";\n' % who)
    settings = {"sieve_before": str(script)}
    for who in ("alice", "bob", "alice"):
        res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE, settings=settings,
                        global_scripts={str(script)}, home=str(tmp_path / who))
        assert res.actions == [{"type": "store", "mailbox": who}], (who, res.errors)
