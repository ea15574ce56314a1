"""docs/architecture.md is the page the code cites, and it names what exists.

Every tracked file is read (git ls-files): none may cite a design page outside the
repository, every citation of a section of docs/architecture.md (the file name, a
comma, the section in double quotes) must name one of the
page's headings, and every module and path the page's tables name must exist.
"""
import os
import re
import subprocess

import pytest

from tests.support import REPO

PAGE = os.path.join(REPO, "docs", "architecture.md")
CITATION = re.compile(r'docs/architecture\.md,\s*(?:#\s*)?(?:\*\s*)?"([^"]+)"')


def tracked_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                         check=True).stdout.decode()
    for name in filter(None, out.split("\0")):
        path = os.path.join(REPO, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" not in data[:4096]:
            yield name, data.decode("utf-8", "replace")


def headings():
    with open(PAGE, encoding="utf-8") as f:
        return {line.lstrip("#").strip().lower() for line in f if line.startswith("#")}


def test_nothing_cites_a_design_page_outside_the_repository():
    # Built from pieces so that this file does not match itself.
    outside = ("DESIGN" + ".md", "../" + "shared/", "/work/" + "shared")
    hits = [name for name, text in tracked_text_files()
            if any(word in text for word in outside)]
    assert not hits, hits


def test_every_section_citation_names_a_heading():
    known = headings()
    cited = []
    for name, text in tracked_text_files():
        flat = re.sub(r"\s*\n\s*(?:#|\*|//)?\s*", " ", text)
        cited += [(name, m.group(1)) for m in CITATION.finditer(flat)]
    assert cited, "the code cites docs/architecture.md's sections"
    unknown = [(name, section) for name, section in cited if section.lower() not in known]
    assert not unknown, unknown


def module_rows():
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    for m in re.finditer(r"^\| (`[^|]+`(?:, `[^|]+`)*) \|", text, re.M):
        yield from re.findall(r"`([^`]+)`", m.group(1))


@pytest.mark.parametrize("module", sorted(set(module_rows())))
def test_every_module_the_page_names_exists(module):
    base = os.path.join(REPO, "pyside", "mailslot")
    if "*" in module:                       # userdb*.py: at least one match
        prefix = module.split("*")[0]
        assert [f for f in os.listdir(base) if f.startswith(prefix)] or \
            os.path.isdir(os.path.join(base, prefix)), module
    else:
        assert os.path.exists(os.path.join(base, module.rstrip("/"))), module


def test_every_layout_path_exists():
    with open(PAGE, encoding="utf-8") as f:
        layout = f.read().split("## The layout", 1)[1].split("```")[1]
    paths = [line.split()[0] for line in layout.splitlines()
             if line and not line.startswith(" ")]
    assert len(paths) >= 8
    missing = [p for p in paths if not os.path.exists(os.path.join(REPO, p))]
    assert not missing, missing
