"""The Postfix recipes have one source: the files in packaging/examples/postfix/.

docs/deployment.md shows each of them whole (a fenced block right after a line that
names the file); the man pages and the README show their service lines and
mailbox_command unchanged (roff escapes and spacing aside). tests/postfix runs
Postfix with the same files, so what the documents show is what was tested.
"""
import os
import re

import pytest

from tests.support import REPO

EXAMPLES = os.path.join(REPO, "packaging", "examples", "postfix")
SHOWN = re.compile(r"`packaging/examples/postfix/([\w.-]+)`:\n\n```[a-z]*\n(.*?)```", re.S)
EXIM = "packaging/examples/exim/exim4.conf-mailslot"


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def example_files():
    return sorted(os.listdir(EXAMPLES))


def shown_in_deployment():
    return SHOWN.findall(read("docs", "deployment.md"))


@pytest.mark.parametrize("name", example_files())
def test_deployment_shows_every_example_file(name):
    assert name in [shown for shown, _ in shown_in_deployment()], name


@pytest.mark.parametrize("name,block", shown_in_deployment(),
                         ids=[n for n, _ in shown_in_deployment()])
def test_deployment_shows_the_file_unchanged(name, block):
    assert block == read("packaging", "examples", "postfix", name)


def settings_lines(text):
    """A Postfix file's entries: comments dropped, continuation lines joined,
    white space runs made one space."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    return [" ".join(e.split()) for e in entries]


def unroff(text):
    return text.replace("\\-", "-").replace("\\(lq", '"').replace("\\(rq", '"')


def man_blocks(page):
    text = read("docs", "man", page)
    return [unroff(b) for b in re.findall(r"^\.nf\n(.*?)^\.fi$", text, re.S | re.M)]


def readme_blocks():
    return re.findall(r"^```[a-z]*\n(.*?)^```$", read("README.md"), re.S | re.M)


def entries_of(blocks):
    found = []
    for block in blocks:
        found += settings_lines(block)
    return found


@pytest.mark.parametrize("where,blocks,example", [
    ("mailslot-relay(8)", lambda: man_blocks("mailslot-relay.8"), "master.cf-virtual"),
    ("mailslot-lda(1)", lambda: man_blocks("mailslot-lda.1"), "master.cf-vmail"),
    ("mailslot-lda(1)", lambda: man_blocks("mailslot-lda.1"), "main.cf-system-users"),
    ("README", readme_blocks, "master.cf-vmail"),
    ("README", readme_blocks, "main.cf-system-users"),
])
def test_man_pages_and_readme_show_the_example_lines(where, blocks, example):
    wanted = [e for e in settings_lines(read("packaging", "examples", "postfix", example))
              if e.startswith(("mailslot ", "mailbox_command"))]
    assert wanted, example
    shown = entries_of(blocks())
    for entry in wanted:
        assert entry in shown, (where, entry, shown)


def pipe_arguments(example):
    (service,) = [e for e in settings_lines(read("packaging", "examples", "postfix", example))
                  if e.startswith("mailslot ")]
    return service.split()


@pytest.mark.parametrize("example", ["master.cf-virtual", "master.cf-vmail"])
@pytest.mark.parametrize("word", ["null_sender=", "-a", "${original_recipient}", "-m",
                                  "${extension}", "-f", "${sender}", "flags=DRhu"])
def test_pipe_lines_pass_what_the_engine_needs(example, word):
    # null_sender=: <> not MAILER-DAEMON; -a: the original recipient; -m: the folder.
    assert word in pipe_arguments(example)


@pytest.mark.parametrize("where", ["docs/deployment.md", "README.md",
                                   "docs/man/mailslot-lda.1", "docs/man/mailslot-relay.8",
                                   "packaging/examples/postfix/master.cf-virtual"])
def test_lower_cased_extension_is_said_where_minus_m_extension_is_shown(where):
    text = unroff(read(where))
    assert "-m ${extension}" in " ".join(text.split())
    assert re.search(r"lower-cases? .{0,40}extension|extension.{0,80}lower-case", " ".join(text.split()), re.I), where


def test_root_alias_is_documented():
    text = read("docs", "deployment.md")
    assert "root: alice" in text and "newaliases" in text and "/nonexistent" in text


def test_deployment_shows_the_exim_example_unchanged():
    text = read("docs", "deployment.md")
    m = re.search(r"`" + re.escape(EXIM) + r"` \(.*?```\n(.*?)```", text, re.S)
    assert m, "docs/deployment.md shows the Exim example"
    assert m.group(1) == read(*EXIM.split("/"))
