"""The house's layout: one place names every Redis key, and the processes import only what they use."""

from __future__ import annotations

import ast

from relay.dev import ROOT


def test_no_module_but_keys_builds_a_relay_key() -> None:
    found = []
    for path in sorted((ROOT / "relay").rglob("*.py")):
        if path.name == "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("relay:"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:40]!r}")
    assert found == []


def test_the_worker_the_cli_and_the_suno_package_do_not_import_flask() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, relay.suno, relay.cli, relay.jobs, relay.worker.process, relay.worker.sweeper; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'rq_dashboard', 'jinja2')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    pure = (
        "import sys, relay.suno; print(sorted(m for m in sys.modules if m.split('.')[0] in ('rq', 'redis', 'flask')))"
    )
    out = subprocess.run([sys.executable, "-c", pure], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_unit_tests_mirror_the_packages_of_relay() -> None:
    """tests/unit/<package>/ for each package of relay/; tests/system/ for whole processes."""
    packages = {path.parent.name for path in (ROOT / "relay").glob("*/__init__.py")}
    mirrored = {path.parent.name for path in (ROOT / "tests" / "unit").glob("*/__init__.py")}
    assert packages == mirrored
