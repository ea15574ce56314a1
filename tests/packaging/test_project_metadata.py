"""pyproject.toml and the Makefile's pip step: what a build prints and depends on.

No package is built: pyproject.toml is read with tomllib, the engine's imports with
ast, and the Makefile's pip wrapper is run on an install that cannot succeed (an
empty local index), so nothing is fetched.
"""
import ast
import os
import shutil
import subprocess
import tomllib
import zipfile

from tests.support import REPO

PYPROJECT = os.path.join(REPO, "pyproject.toml")
ENGINE = os.path.join(REPO, "pyside", "mailslot")


def project():
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["project"]


def names(requirements):
    return {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in requirements}


def test_licence_is_an_spdx_string():
    # A TOML table makes every setuptools >= 77 build print its deprecation banner.
    assert project()["license"] == "GPL-3.0-or-later"


def test_cffi_is_a_test_dependency_only():
    meta = project()
    assert "cffi" not in names(meta["dependencies"])
    assert "cffi" in names(meta["optional-dependencies"]["test"])


def imported_modules(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                yield str(node.args[0].value).split(".")[0]


def engine_sources():
    for root, _, files in os.walk(ENGINE):
        yield from (os.path.join(root, f) for f in files if f.endswith(".py"))


def test_nothing_at_run_time_imports_cffi():
    users = [p for p in engine_sources() if "cffi" in set(imported_modules(p))]
    assert not users, users


def test_every_third_party_runtime_import_is_a_declared_dependency():
    declared = {"yaml", "prctl", "psycopg2"}          # psycopg2: Debian's, optional (README)
    assert names(project()["dependencies"]) == {"pyyaml", "python-prctl"}
    stdlib = set(__import__("sys").stdlib_module_names) | {"mailslot"}
    third = {m for p in engine_sources() for m in imported_modules(p)} - stdlib
    assert third <= declared, third - declared


def test_make_drops_pips_ignored_location_noise_and_keeps_its_status(tmp_path):
    # An index location without the package's directory: pip says "Location ... is
    # ignored" for it (as it does, once per package, for the machine's configured
    # indexes). The wrapper must drop that line, keep pip's errors and its failure.
    (tmp_path / "index").mkdir()
    target = ("pipcheck: ; $(call pip,--no-index --find-links "
              f"{tmp_path}/missing --extra-index-url file://{tmp_path}/index "
              "mailslot-no-such-package)")
    proc = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "--eval", target,
                           "pipcheck"], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "No matching distribution found for mailslot-no-such-package" in out
    assert "is ignored" not in out, out


def test_wheel_build_prints_no_deprecation_banner_and_declares_the_licence(tmp_path):
    # A real build, as `make build` runs it (pip, isolated build environment from
    # the configured index), but of a wheel into tmp_path, verbose so the backend's
    # warnings are shown.
    # Built from a copy: setuptools leaves build/ and *.egg-info in the source tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), src / name)
    shutil.copytree(os.path.join(REPO, "pyside"), src / "pyside",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "pip", "wheel",
                           "--no-deps", "-v", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "BuildBackendWarning" not in out and "SPDX" not in out, out[-2000:]
    (wheel,) = tmp_path.glob("mailslot-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
    lines = meta.decode().splitlines()
    assert "License-Expression: GPL-3.0-or-later" in lines
    assert not [line for line in lines if line.startswith("Requires-Dist: cffi")
                and "extra ==" not in line]
