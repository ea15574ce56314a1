"""The RPM: the modes it records with %attr (`rpm -qlvp`), its %pre, its files.

Built by packaging/build-rpm.sh as `make rpm` builds it, with Debian's rpmbuild
(fixture `rpm_package`). Reading the package needs no root.
"""
import pytest

from tests.packaging.packagetest import DOTLOCK, ENTRY, POLICY, RELAY, SETTINGS, rpm_files, run


@pytest.mark.parametrize("path,mode,owner,group", [
    (RELAY, "-rwsr-x---", "root", "secmail"),       # 4750: only secmail may run it
    (DOTLOCK, "-rwxr-sr-x", "root", "mail"),        # 2755: holds the mail group
    (ENTRY, "-rwxr-xr-x", "root", "root"),
    (POLICY, "-rw-r--r--", "root", "root"),         # the relay refuses anything looser
    (SETTINGS, "-rw-r--r--", "root", "root"),
])
def test_records_modes(rpm_package, path, mode, owner, group):
    assert rpm_files(rpm_package)[path] == (mode, owner, group)


def test_settings_and_policy_are_noreplace_config(rpm_package):
    config = run("rpm", "-qcp", rpm_package).split()
    assert SETTINGS in config and POLICY in config


def test_pre_creates_the_group_before_files_are_written(rpm_package):
    scripts = run("rpm", "-qp", "--scripts", rpm_package)
    assert scripts.startswith("preinstall scriptlet")
    assert "groupadd -r secmail" in scripts
    assert "useradd -r -g secmail" in scripts


@pytest.mark.parametrize("page", ["man1/mailslot-lda.1", "man1/mailslot.1",
                                  "man5/mailslot.yaml.5", "man8/mailslot-relay.8",
                                  "man8/mailslot-dotlock.8"])
def test_ships_man_page(rpm_package, page):
    files = rpm_files(rpm_package)
    assert any(p.startswith(f"/usr/share/man/{page}") for p in files)


@pytest.mark.parametrize("requirement", ["python3-pyyaml", "python3-prctl"])
def test_requires_distribution_python_modules(rpm_package, requirement):
    assert requirement in run("rpm", "-qp", "--requires", rpm_package).split()


def test_cffi_is_not_a_runtime_requirement(rpm_package):
    # Only the tests load the C helpers through cffi (pyproject.toml's test extra).
    assert "python3-cffi" not in run("rpm", "-qp", "--requires", rpm_package).split()


@pytest.mark.parametrize("doc", ["README.md", "SECURITY.md", "architecture.md",
                                 "deployment.md", "userdb.md", "sieve.md", "benchmarks.md",
                                 "relay.policy.example"])
def test_ships_the_documents_the_man_pages_point_to(rpm_package, doc):
    assert [p for p in rpm_files(rpm_package)
            if p.startswith("/usr/share/doc/") and p.endswith("/" + doc)], doc


def test_ships_the_lmtp_server(rpm_package):
    files = rpm_files(rpm_package)
    for path in ("/usr/lib/mailslot/mailslot-lmtpd",
                 "/usr/lib/systemd/system/mailslot-lmtpd.service",
                 "/usr/lib/systemd/system/mailslot-lmtpd.socket"):
        assert path in files, path
    assert [p for p in files if p.startswith("/usr/share/man/man8/mailslot-lmtpd.8")]


def test_no_virtualenv_in_the_payload(rpm_package):
    assert not [p for p in rpm_files(rpm_package) if ".venv" in p or "site-packages" in p]
