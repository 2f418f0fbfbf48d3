"""The floor plan: imports point one way (core, then what the panels share, then the panels and
the commands, then the composition), and importing a module loads only what is below it."""
import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PKG = ROOT / "wlm"
PANELS = {"sidebyside", "yourtext", "measureview", "inspectview", "ladderview", "recipeview"}
TOP = {"app", "cli", "__main__"}


def graph() -> dict[str, set[str]]:
    """module -> the wlm modules it imports (at any level, type-only and function-level included)."""
    mods = {".".join(p.relative_to(PKG).with_suffix("").parts): p for p in PKG.rglob("*.py")}
    g = {m: set() for m in mods}
    for m, path in mods.items():
        package = m.split(".")[:-1] if not m.endswith("__init__") else m.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                if node.level == 0 and not (node.module or "").startswith("wlm"):
                    continue
                mod = (node.module or "").removeprefix("wlm.").removeprefix("wlm") if node.level == 0 else node.module
                stem = [*base, *(mod.split(".") if mod else [])]
                names = [".".join(stem)] + [".".join([*stem, a.name]) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("wlm.") for a in node.names if a.name.startswith("wlm.")]
            g[m].update(n for n in names if n in mods and n != m)
    return g


def test_no_module_imports_one_that_imports_it_back():
    g = graph()

    def reaches(a, b):
        seen, todo = set(), [a]
        while todo:
            v = todo.pop()
            if v == b:
                return True
            if v not in seen:
                seen.add(v)
                todo.extend(g[v])
        return False
    circles = sorted(m for m in g for d in g[m] if reaches(d, m))
    assert not circles, f"on an import circle: {circles}"


def test_the_panels_know_only_what_is_below_them():
    g = graph()
    for panel in PANELS:
        assert not (g[panel] & (PANELS | TOP)), f"{panel} imports {g[panel] & (PANELS | TOP)}"
    below = {m for m in g if m not in PANELS | TOP and not m.startswith("commands")}
    for m in below:
        assert not (g[m] & (PANELS | TOP)) and not any(d.startswith("commands") for d in g[m]), \
            f"{m} imports {g[m] & (PANELS | TOP)}"


@pytest.mark.parametrize("module, never", [
    ("wlm.model", {"gradio", "pandas", "wlm.app", "wlm.shared"}),
    ("wlm.lowbit", {"gradio", "pandas", "wlm.shared"}),
    ("wlm.packed", {"gradio", "pandas", "wlm.shared"}),
    ("wlm.shared", {"gradio", "wlm.app", "wlm.sidebyside", "wlm.measureview"}),
    ("wlm.cli", {"gradio", "pandas", "wlm.shared"}),
])
def test_importing_a_module_loads_only_what_is_below_it(module, never):
    out = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(' '.join(sys.modules))"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    assert not (never & set(out)), f"import {module} loaded {never & set(out)}"
