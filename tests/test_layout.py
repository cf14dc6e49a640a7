"""The tree keeps its shape: the import layering ARCHITECTURE.md's package map states holds,
no source file grows past the line budget, and every package folder is installed."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
LINE_BUDGET = 400
# the source folders and the package each installs as (pyproject.toml's package-dir)
SOURCES = {"ofac": "ofac", "runtime": "ofac.runtime", "grammar": "ofac.grammar"}


def _module(path: Path) -> str:
    """The module's name (a package's `__init__` is the package; `ofac`'s own is `ofac.__init__`,
    the facade that forwards the API's names)."""
    top = path.relative_to(ROOT).parts[0]
    rel = path.relative_to(ROOT / top).with_suffix("")
    if top == "ofac" and rel.parts == ("__init__",):
        return "ofac.__init__"
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([SOURCES[top], *parts])


def _sources() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py"))


def _known_modules() -> set[str]:
    return {_module(p).removesuffix(".__init__") for p in _sources()}


def package_map() -> dict[str, set[str]]:
    """ARCHITECTURE.md's package table: package -> the packages it may import."""
    rows = {}
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) == 3:
            (name,) = re.findall(r"`([\w.]+)`", cells[0])
            rows[name] = set(re.findall(r"`([\w.]+)`", cells[2]))
    return rows


def _package_of(module: str, packages) -> str | None:
    matches = [p for p in packages if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import of an ofac module in the file (or in `text`, as if it were
    the file), function bodies included (a deferred import is an import), relative ones resolved."""
    module = _module(path).removesuffix(".__init__")
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    known = _known_modules()
    out = []
    for node in ast.walk(ast.parse(text if text is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import module` imports a module of that package
            names = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out += [(node.lineno, n) for n in names] or [(node.lineno, target)]
    return [(line, m) for line, m in out if m == "ofac" or m.startswith("ofac.")]


def test_the_package_map_covers_every_package():
    packages = package_map()
    assert "ofac" in packages and "ofac.runtime" in packages and "ofac.ir" in packages
    unmapped = sorted({_module(p) for p in _sources() if _package_of(_module(p), packages) is None})
    assert unmapped == [], "modules of no package in ARCHITECTURE.md"


def test_every_import_is_one_the_package_map_allows():
    packages = package_map()
    wrong = []
    for path in _sources():
        own = _package_of(_module(path), packages)
        for line, target in _imports(path):
            other = _package_of(target, packages)
            if other is not None and other != own and other not in packages[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target} ({other})")
    assert wrong == []


def test_a_deferred_import_of_the_runtime_by_the_compiler_is_found():
    """The check itself can fail: the compiler may never import the runtime, the API or the
    command line, and an import inside a function counts."""
    packages = package_map()
    assert not {"ofac.runtime", "ofac.api", "ofac.cli"} & (packages["ofac"] | packages["ofac.ir"])
    sneaky = "def f():\n    from .runtime.train import recipe\n    from . import api\n"
    found = [t for _, t in _imports(ROOT / "ofac" / "lower.py", sneaky)]
    assert found == ["ofac.runtime.train.recipe", "ofac.api"]
    assert {_package_of(t, packages) for t in found} == {"ofac.runtime.train", "ofac.api"}


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_source_files_stay_within_the_line_budget(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= LINE_BUDGET


def test_import_ofac_loads_the_api_only_on_first_use():
    """The facade imports the API (and so the runtime) inside `__getattr__`, never at import."""
    tree = ast.parse((ROOT / "ofac" / "__init__.py").read_text(encoding="utf-8"))
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(n.module not in ("api", "cli") and not (n.module or "").startswith(("runtime", "api", "cli"))
               for n in top_level if isinstance(n, ast.ImportFrom))
    deferred = [n for f in tree.body if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
                if isinstance(n, ast.ImportFrom)]
    assert [n.names[0].name for n in deferred] == ["api"]


def test_every_package_folder_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_module(p).removesuffix(".__init__") for p in _sources() if p.name == "__init__.py"}
    assert folders - listed == set() and listed - folders == set()
