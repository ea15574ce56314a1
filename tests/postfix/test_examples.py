"""The running instance is configured by the shipped example files, not by copies.

postconf reads back the parameters Postfix actually uses; each entry of
main.cf-virtual and main.cf-system-users must be among them (with the test's domain,
map and paths substituted), the vmailbox map must answer for the virtual users as
compiled by postmap, and the pipe service must be master.cf-virtual's.
"""
import os
import subprocess

import pytest

from tests.postfix.postfixtest import EXAMPLES, VIRTUAL_DOMAINS, VMAIL_SERVICE


def postconf(postfix, *args):
    return subprocess.run(["postconf", "-c", postfix.pf_etc, *args], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def example_parameters(name):
    params = {}
    with open(os.path.join(EXAMPLES, name)) as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                params[key.strip()] = value.strip()
    return params


@pytest.mark.parametrize("name", ["main.cf-virtual", "main.cf-system-users"])
def test_main_cf_has_every_example_parameter(postfix, name):
    vmailbox = os.path.join(postfix.pf_etc, "vmailbox")
    lda = os.path.join(postfix.libdir, "mailslot-lda")
    for key, value in example_parameters(name).items():
        value = (value.replace("/etc/postfix/vmailbox", vmailbox)
                 .replace("example.org", VIRTUAL_DOMAINS)
                 .replace("/usr/lib/mailslot/mailslot-lda", f"{lda} -c {postfix.settings}"))
        assert postconf(postfix, "-h", key).strip() == value, key


def test_vmailbox_map_is_compiled_with_postmap(postfix):
    vmailbox = os.path.join(postfix.pf_etc, "vmailbox")
    assert os.path.exists(vmailbox + ".db")
    for user in postfix.virtual:
        out = subprocess.run(["postmap", "-c", postfix.pf_etc, "-q", user.address,
                              f"hash:{vmailbox}"], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "ok", (user.address, out.stderr)


def test_pipe_service_is_the_example_line(postfix):
    service = postconf(postfix, "-M", "mailslot/unix")
    assert service.split() == postfix.example_master_line().split()


def test_vmail_service_is_the_example_line(postfix):
    service = postconf(postfix, "-M", f"{VMAIL_SERVICE}/unix")
    assert service.split() == postfix.example_vmail_line().split()
    with open(os.path.join(EXAMPLES, "master.cf-vmail")) as f:
        example = " ".join(line for line in f if not line.lstrip().startswith("#")).split()
    # Only the service name, the user and the install path differ from the file.
    assert len(service.split()) == len(example) + 2         # "-c <settings>"
