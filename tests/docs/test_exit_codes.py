"""README's exit table, mailslot-lda(1)'s EXIT STATUS and errors.py say the same.

The code's answer is errors.FAILURES (the one place that maps failures to exit
codes) plus 0; each document must list exactly those codes, and say of 77 that an
ereject exits with it whether or not -e is given, a reject with -e (without -e the
rejection is mailed: tests/send/test_engine_send.py).
"""
import os
import re

import pytest

from mailslot import errors

from tests.support import REPO


def readme_table():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.*) \|$", section, re.M)}


def man_table():
    text = open(os.path.join(REPO, "docs", "man", "mailslot-lda.1"), encoding="utf-8").read()
    section = text.split(".SH EXIT STATUS", 1)[1].split("\n.SH ", 1)[0]
    rows = {}
    for block in section.split(".TP\n")[1:]:
        head, _, body = block.partition("\n")
        rows[int(head.removeprefix(".B ").strip())] = body.split("\n.PP")[0]
    return rows


def code_table():
    return {0} | {row.exit_code for row in errors.FAILURES.values()}


@pytest.mark.parametrize("table", [readme_table, man_table], ids=["README", "man page"])
def test_documents_list_the_codes_the_code_returns(table):
    assert set(table()) == code_table()


@pytest.mark.parametrize("table", [readme_table, man_table], ids=["README", "man page"])
def test_77_is_reject_with_minus_e_and_ereject(table):
    text = " ".join(table()[errors.EX_NOPERM].replace("\\-", "-").split())
    assert errors.exit_code_for(errors.RejectedError("x")) == errors.EX_NOPERM
    assert re.search(r"\breject`? (\.BR? )?with (\.BR? )?`?-e", text, re.I), text
    assert re.search(r"\bereject`? (\.BR? )?with or without", text, re.I), text
