"""The built .deb: what it ships, what it depends on, and what it must not carry.

Built by packaging/build-deb.sh as `make deb` builds it (fixture `debs`). No root
needed: only the package files are read.
"""
import gzip
import os
import re

import pytest

from tests.support import REPO
from tests.packaging.packagetest import DOTLOCK, ENTRY, POLICY, RELAY, SETTINGS, deb_field, deb_files, run

MAN_PAGES = ["usr/share/man/man1/mailslot-lda.1.gz", "usr/share/man/man1/mailslot.1.gz",
             "usr/share/man/man5/mailslot.yaml.5.gz",
             "usr/share/man/man8/mailslot-relay.8.gz",
             "usr/share/man/man8/mailslot-dotlock.8.gz",
             "usr/share/man/man8/mailslot-lmtpd.8.gz",
             "usr/share/man/man8/mailslot-handoffd.8.gz"]
EXAMPLES = ["usr/share/doc/mailslot/examples/postfix/master.cf-virtual",
            "usr/share/doc/mailslot/examples/postfix/master.cf-vmail",
            "usr/share/doc/mailslot/examples/postfix/main.cf-virtual",
            "usr/share/doc/mailslot/examples/postfix/main.cf-system-users",
            "usr/share/doc/mailslot/examples/postfix/vmailbox",
            "usr/share/doc/mailslot/examples/postfix/main.cf-lmtp",
            "usr/share/doc/mailslot/examples/exim/exim4.conf-mailslot",
            "usr/share/doc/mailslot/examples/sendmail/Mlocal-mailslot.cf"]
# What the man pages send the reader to /usr/share/doc/mailslot/ for.
DOCS = ["README.md", "SECURITY.md", "architecture.md", "benchmarks.md", "deployment.md",
        "sieve.md", "userdb.md", "relay.policy.example"]
DOC_DIR = "usr/share/doc/mailslot"


@pytest.fixture(scope="module")
def deb(debs):
    return debs[0]


@pytest.mark.parametrize("path", [RELAY[1:], DOTLOCK[1:], ENTRY[1:],
                                  "usr/lib/mailslot/mailslot", "usr/bin/mailslot",
                                  "usr/lib/mailslot/mailslot-lmtpd",
                                  "lib/systemd/system/mailslot-lmtpd.service",
                                  "lib/systemd/system/mailslot-lmtpd.socket",
                                  "usr/lib/mailslot/mailslot-lda-front",
                                  "usr/lib/mailslot/mailslot-handoffd",
                                  "lib/systemd/system/mailslot-handoffd@.service",
                                  "usr/lib/mailslot/python/mailslot/cli.py",
                                  SETTINGS[1:], POLICY[1:]] + MAN_PAGES + EXAMPLES)
def test_ships(deb, path):
    assert path in deb_files(deb)


@pytest.mark.parametrize("program", ["usr/lib/mailslot/mailslot-lda-front",
                                     "usr/lib/mailslot/mailslot-handoffd"])
def test_fast_path_programs_hold_no_privilege(deb, program):
    # The hand-off front and server run as the delivering uid: no set-id bit, ever
    # (SECURITY.md, "The fast path").
    mode, owner = deb_files(deb)[program]
    assert mode == "-rwxr-xr-x" and owner == "root/root", (mode, owner)


@pytest.mark.parametrize("doc", DOCS)
def test_ships_the_documents_the_man_pages_point_to(deb, doc, tmp_path):
    # dh_compress may gzip a large one; its text must be the repository's.
    files = deb_files(deb)
    shipped = [p for p in (f"{DOC_DIR}/{doc}", f"{DOC_DIR}/{doc}.gz") if p in files]
    assert shipped, sorted(p for p in files if p.startswith(DOC_DIR))
    run("dpkg-deb", "-x", deb, str(tmp_path / "root"))
    data = (tmp_path / "root" / shipped[0]).read_bytes()
    if shipped[0].endswith(".gz"):
        data = gzip.decompress(data)
    source = {"relay.policy.example": "helper_c/relay.policy.example",
              "README.md": "README.md", "SECURITY.md": "SECURITY.md"}.get(doc, f"docs/{doc}")
    with open(os.path.join(REPO, source), "rb") as f:
        assert data == f.read()


def test_every_man_page_pointer_to_the_doc_directory_resolves(deb):
    # "/usr/share/doc/mailslot/<file>" in a page names a file the package ships.
    files = deb_files(deb)
    named = set()
    for page in os.listdir(os.path.join(REPO, "docs", "man")):
        with open(os.path.join(REPO, "docs", "man", page)) as f:
            text = f.read().replace("\\-", "-").replace("\\&", "")
        named |= set(re.findall(r"/usr/share/doc/mailslot/([\w.-]+)", text))
    missing = [n for n in named if f"{DOC_DIR}/{n}" not in files
               and f"{DOC_DIR}/{n}.gz" not in files]
    assert not missing, missing


def test_no_unit_names_a_missing_binary(deb, tmp_path):
    # A unit whose ExecStart= binary is neither in the package nor on the system
    # fails at its first start.
    run("dpkg-deb", "-x", deb, str(tmp_path / "root"))
    files = deb_files(deb)
    units = [p for p in files if "/systemd/" in p and p.rsplit(".", 1)[-1]
             in ("service", "socket", "timer", "path")]
    for unit in units:
        for line in (tmp_path / "root" / unit).read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip().startswith("Exec") and value.strip():
                binary = value.strip().lstrip("@-:+!").split()[0]
                assert binary[1:] in files or os.path.exists(binary), (unit, binary)
    assert {"lib/systemd/system/mailslot-lmtpd.service",
            "lib/systemd/system/mailslot-lmtpd.socket",
            "lib/systemd/system/mailslot-handoffd@.service"} <= set(units), units


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


@pytest.mark.parametrize("dependency", ["python3-yaml", "python3-prctl", "adduser"])
def test_depends_on_debians_python_modules(deb, dependency):
    depends = [d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")]
    assert dependency in depends


def test_cffi_is_not_a_dependency(deb):
    # Only the tests load the C helpers through cffi (pyproject.toml's test extra).
    depends = [d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")]
    assert "python3-cffi" not in depends


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

