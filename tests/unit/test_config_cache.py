"""The settings cache against a path that changes under it (issue 20.2).

Root runs `mailslot config -c PATH`; every user then trusts the root-owned cache.
The race is made deterministic: os.stat/os.open/os.lstat/open are wrapped so that
every call that touches the test tree flips a symlinked directory between the real
configuration and a forged one -- exactly between the steps the old code took by
path. Whatever the flips, the real directory's cache must describe the real file,
and no cache may pair the real file's key with the forged settings.
"""

import builtins
import os
import shutil

import pytest

from mailslot import config
from mailslot.errors import ConfigError, EX_TEMPFAIL, exit_code_for
from tests.support import free_uid, needs_root, world_tempdir

REAL = "mail_location: maildir:~/Maildir\nfirst_valid_uid: 1000\n"
FORGED = "mail_location: maildir:/tmp/attacker/%u\nfirst_valid_uid: 1000\n"


@pytest.fixture
def tree():
    base = world_tempdir("mailslot-cfgrace-")
    for name, text in (("real", REAL), ("forged", FORGED)):
        os.mkdir(os.path.join(base, name), 0o755)
        path = os.path.join(base, name, "mailslot.yaml")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    # Same size, same mtime: only the inode tells them apart.
    os.utime(os.path.join(base, "forged", "mailslot.yaml"), ns=(10**18, 10**18))
    os.utime(os.path.join(base, "real", "mailslot.yaml"), ns=(10**18, 10**18))
    os.symlink("real", os.path.join(base, "link"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def install_flipper(base):
    """Wrap the path-taking calls: each one under base flips link afterwards.
    Returns the list of flips (for the caller to check they happened)."""
    link = os.path.join(base, "link")
    config_path = os.path.join(link, "mailslot.yaml")
    flips = []
    real_open, real_symlink, real_rename, real_readlink = (
        os.open, os.symlink, os.rename, os.readlink)

    def flip():
        target = "forged" if real_readlink(link) == "real" else "real"
        tmp = link + ".new"
        real_symlink(target, tmp)
        real_rename(tmp, link)
        flips.append(target)

    def wrap(func):
        def wrapper(path, *args, **kwargs):
            try:
                return func(path, *args, **kwargs)
            finally:
                # After each step that resolves the configuration's directory or
                # file (not the cache's own files: the swap must land between the
                # key, the YAML read and the cache write).
                if isinstance(path, str) and (path in (link, config_path) or (
                        path == "mailslot.yaml" and kwargs.get("dir_fd") is not None)):
                    flip()
        return wrapper

    for name in ("stat", "open", "lstat"):
        setattr(os, name, wrap(getattr(os, name)))
    builtins.open = wrap(builtins.open)
    return flips


def race(base, uid=None):
    """load_settings(base/link/mailslot.yaml) with the flipper installed, in a child
    (as uid when given); returns what it said: "ok <mail_location> <flips>" or
    "refused <message>"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            flips = install_flipper(base)
            try:
                settings = config.load_settings(os.path.join(base, "link", "mailslot.yaml"))
                out = f"ok {settings['mail_location']} {len(flips)}"
            except ConfigError as exc:
                out = f"refused {exc}"
            os.write(write_end, out.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        return f.read().decode()


def cache_of(directory):
    path = os.path.join(directory, ".mailslot.yaml.cache")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


@needs_root
@pytest.mark.parametrize("who", ["root", "user"])
@pytest.mark.parametrize("start", ["real", "forged"])
def test_symlink_flipped_between_the_steps_cannot_forge_the_cache(tree, start, who):
    """As root the symlinked path is refused outright; as its owner (who may use
    it) every step goes through one opened directory and file, so each cache
    holds its own file's key and settings whatever the flips."""
    uid = None
    if who == "user":
        uid = free_uid(47310)
        for root, dirs, files in os.walk(tree):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, uid, uid, follow_symlinks=False)
    if start == "forged":
        os.unlink(os.path.join(tree, "link"))
        os.symlink("forged", os.path.join(tree, "link"))
    said = race(tree, uid)
    if who == "root":
        assert said.startswith("refused") and "symlink" in said, said
    else:
        verdict, location, flips = said.split(" ")
        assert verdict == "ok" and int(flips) >= 2, said   # flipped between the steps
        assert location in ("maildir:~/Maildir", "maildir:/tmp/attacker/%u")
    real_key = config._cache_key(os.stat(os.path.join(tree, "real", "mailslot.yaml")))
    forged_key = config._cache_key(os.stat(os.path.join(tree, "forged", "mailslot.yaml")))
    for directory, key, location in (("real", real_key, "maildir:~/Maildir"),
                                     ("forged", forged_key, "maildir:/tmp/attacker/%u")):
        text = cache_of(os.path.join(tree, directory))
        if text is not None:
            lines = text.split("\n")
            assert lines[1] == key, (directory, lines[1])
            assert f"mail_location\t{location}" in lines, (directory, text[:200])
    if who == "root":
        assert cache_of(os.path.join(tree, "real")) is None
        assert cache_of(os.path.join(tree, "forged")) is None


@needs_root
@pytest.mark.parametrize("owned", ["directory", "file", "parent"])
def test_root_refuses_a_path_another_user_can_change(tree, owned):
    uid = free_uid(47300)
    real = os.path.join(tree, "real")
    if owned == "directory":
        os.chown(real, uid, uid)
    elif owned == "file":
        os.chown(os.path.join(real, "mailslot.yaml"), uid, uid)
    else:
        os.chown(tree, uid, uid)
    with pytest.raises(ConfigError) as info:
        config.load_settings(os.path.join(real, "mailslot.yaml"))
    assert "refusing as root" in str(info.value)
    assert exit_code_for(info.value) == EX_TEMPFAIL
    assert cache_of(real) is None


@needs_root
def test_root_refuses_symlinks_on_the_path(tree):
    with pytest.raises(ConfigError) as info:
        config.load_settings(os.path.join(tree, "link", "mailslot.yaml"))
    assert "symlink" in str(info.value)
    os.symlink("mailslot.yaml", os.path.join(tree, "real", "alias.yaml"))
    with pytest.raises(ConfigError) as info:
        config.load_settings(os.path.join(tree, "real", "alias.yaml"))
    assert "symlink" in str(info.value)
    assert cache_of(os.path.join(tree, "real")) is None


def test_a_large_cache_is_read_whole(tree):
    """The old reader stopped at 1 MiB: first_valid_uid 43000 came back as 43."""
    path = os.path.join(tree, "real", "big.yaml")
    filler = "x" * ((1 << 20) - 40)
    with open(path, "w") as f:
        f.write(f"postmaster_address: {filler}\nfirst_valid_uid: 43000\n")
    first = config.load_settings(path)
    assert os.path.exists(os.path.join(tree, "real", ".big.yaml.cache"))
    second = config.load_settings(path)           # from the cache
    assert first["first_valid_uid"] == second["first_valid_uid"] == 43000
    assert second["postmaster_address"] == filler


def test_an_oversized_cache_is_refused_not_cut(tree, monkeypatch):
    path = os.path.join(tree, "real", "mailslot.yaml")
    config.load_settings(path)
    monkeypatch.setattr(config, "CACHE_MAX_BYTES", 100)
    calls = []
    real = config._parse_yaml
    monkeypatch.setattr(config, "_parse_yaml",
                        lambda text, p, *rest: calls.append(p) or real(text, p, *rest))
    assert config.load_settings(path)["first_valid_uid"] == 1000
    assert calls == [path]                          # the YAML was parsed again


@pytest.mark.parametrize("step", ["directory-opened", "file-opened", "before-cache-write"])
def test_swap_at_each_named_step_changes_nothing_read_or_written(tree, monkeypatch, step):
    """The loader's own step hook: the directory swapped at one step (as its owner
    may) never mixes the two files -- what is returned and what is cached are the
    real file's, because everything after the directory's open goes through fds."""
    monkeypatch.setattr(os, "geteuid", lambda: 4242)   # the owner's view: symlinks allowed
    link = os.path.join(tree, "link")

    def hook(name):
        if name == step:
            os.unlink(link)
            os.symlink("forged", link)
    monkeypatch.setattr(config, "_step_hook", hook)
    settings = config.load_settings(os.path.join(link, "mailslot.yaml"))
    assert settings["mail_location"] == "maildir:~/Maildir"
    assert cache_of(os.path.join(tree, "forged")) is None
    text = cache_of(os.path.join(tree, "real"))
    assert text is not None and "mail_location\tmaildir:~/Maildir" in text.split("\n")
