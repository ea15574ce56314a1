"""The built .deb: what it ships, what it depends on, and what it must not carry.

Built by packaging/build-deb.sh as `make deb` builds it (fixture `debs`). No root
needed: only the package files are read.
"""
import pytest

from tests.packaging.packagetest import DOTLOCK, ENTRY, POLICY, RELAY, SETTINGS, deb_field, deb_files, run

MAN_PAGES = ["usr/share/man/man1/mailslot-lda.1.gz", "usr/share/man/man1/mailslot.1.gz",
             "usr/share/man/man5/mailslot.yaml.5.gz",
             "usr/share/man/man8/mailslot-relay.8.gz",
             "usr/share/man/man8/mailslot-dotlock.8.gz",
             "usr/share/man/man8/mailslot-lmtpd.8.gz"]
UNITS = ["lib/systemd/system/mailslot-lmtpd.socket",
         "lib/systemd/system/mailslot-lmtpd.service"]
EXAMPLES = ["usr/share/doc/mailslot/examples/postfix/master.cf-virtual",
            "usr/share/doc/mailslot/examples/postfix/main.cf-system-users",
            "usr/share/doc/mailslot/examples/postfix/main.cf-lmtp",
            "usr/share/doc/mailslot/examples/exim/exim4.conf-mailslot",
            "usr/share/doc/mailslot/examples/sendmail/Mlocal-mailslot.cf"]


@pytest.fixture(scope="module")
def deb(debs):
    return debs[0]


@pytest.mark.parametrize("path", [RELAY[1:], DOTLOCK[1:], ENTRY[1:],
                                  "usr/lib/mailslot/mailslot", "usr/bin/mailslot",
                                  "usr/lib/mailslot/python/mailslot/cli.py",
                                  SETTINGS[1:], POLICY[1:]] + MAN_PAGES + UNITS + EXAMPLES)
def test_ships(deb, path):
    assert path in deb_files(deb)


@pytest.mark.parametrize("helper", [RELAY[1:], DOTLOCK[1:]])
def test_set_id_bits_come_from_postinst_not_from_the_archive(deb, helper):
    # dh_fixperms drops set-id bits; postinst registers them with dpkg-statoverride
    # so that dpkg reapplies them at every unpack.
    mode, owner = deb_files(deb)[helper]
    assert (mode, owner) == ("-rwxr-xr-x", "root/root")


def test_conffiles_are_the_settings_and_the_policy(deb, tmp_path):
    run("dpkg-deb", "-e", deb, str(tmp_path / "ctl"))
    conffiles = (tmp_path / "ctl" / "conffiles").read_text().split()
    assert sorted(conffiles) == sorted([SETTINGS, POLICY])


@pytest.mark.parametrize("dependency", ["python3-yaml", "python3-prctl", "python3-cffi",
                                        "adduser"])
def test_depends_on_debians_python_modules(deb, dependency):
    depends = [d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")]
    assert dependency in depends


def test_built_without_a_virtualenv(deb):
    files = deb_files(deb)
    assert not [p for p in files if ".venv" in p or "site-packages" in p
                or "dist-packages" in p or p.endswith(".pyc")], \
        "the engine ships as sources in /usr/lib/mailslot/python; py3compile compiles them"


def test_entry_runs_debians_python_isolated(deb, tmp_path):
    run("dpkg-deb", "-x", deb, str(tmp_path / "root"))
    first = (tmp_path / "root" / ENTRY[1:]).read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3 -IS"


def test_policy_points_at_the_installed_engine(deb, tmp_path):
    run("dpkg-deb", "-x", deb, str(tmp_path / "root"))
    lines = (tmp_path / "root" / POLICY[1:]).read_text().splitlines()
    keys = dict(line.split(" = ", 1) for line in lines if line and not line.startswith("#"))
    assert keys["entry"] == ENTRY
    assert keys["interpreter"] == "/usr/bin/python3"
    assert keys["caller_groups"] == "secmail"


@pytest.mark.parametrize("script,words", [
    ("postinst", ["dpkg-statoverride --list", "4750", "2755", "addgroup --system",
                  "py3compile"]),
    ("postrm", ["dpkg-statoverride --remove", ".mailslot.yaml.cache"]),
    ("prerm", ["py3clean"]),
])
def test_maintainer_scripts(deb, tmp_path, script, words):
    run("dpkg-deb", "-e", deb, str(tmp_path / "ctl"))
    text = (tmp_path / "ctl" / script).read_text()
    for word in words:
        assert word in text, (script, word)

