"""The layout's rules, read from the source: layers import only downwards, no module uses another
subpackage's private names, nothing refers to files outside the repository."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Floors, from the bottom; a module may import from its own floor or below.
FLOORS = [
    {"errors", "events", "version", "progress", "kernels.registry"},
    {"neurons", "projections"},
    {"kernels"},
    {"network"},
    {"learning", "datasets", "reservoirs", "storage", "interop"},
    {"continual"},
    {"plugins"},
    {"models"},
    {"runs"},
    {"cli"},
    {"", "__main__"},
]


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (plugins/ and models/ under their installed names)."""
    found = {}
    for top, package in (("neurosim", "neurosim"), ("plugins", "neurosim.plugins"), ("models", "neurosim.models")):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT / top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = path
    return found


MODULES = modules()


def floor(module: str) -> int:
    rel = module.removeprefix("neurosim").removeprefix(".")
    for level, names in enumerate(FLOORS):
        if rel in names:
            return level
    for level, names in enumerate(FLOORS):
        if rel.split(".")[0] in names:
            return level
    raise AssertionError(f"{module} is on no floor: add its subpackage to FLOORS")


def room(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2])


def imports(module: str, path: Path):
    """``(line, imported module, names)`` of every import in ``path``, function-level ones included,
    resolved to absolute module names; only imports of neurosim itself."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "neurosim":
                continue
            names = [a.name for a in node.names]
            # ``from package import module`` imports the module
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            yield node.lineno, target, [n for n in names if f"{target}.{n}" not in MODULES]
            for sub in subs:
                yield node.lineno, sub, []
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "neurosim":
                    yield node.lineno, a.name, []


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor(module)


def test_lower_layers_never_import_higher_ones():
    upward = []
    for module, path in MODULES.items():
        for line, target, _ in imports(module, path):
            if floor(target) > floor(module):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_module_uses_a_private_name_of_another_subpackage():
    private = []
    for module, path in MODULES.items():
        for line, target, names in imports(module, path):
            if room(target) == room(module):
                continue
            private += [f"{path.relative_to(ROOT)}:{line} imports {target}.{n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
            if target.rsplit(".", 1)[-1].startswith("_"):
                private.append(f"{path.relative_to(ROOT)}:{line} imports the private module {target}")
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name: a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name.startswith("neurosim")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not private, "\n".join(private)


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks above on a module written to break both rules."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..continual.runner import Continual\nfrom ..network.graph import _helper\n")
    found = list(imports("neurosim.neurons.bad", bad))
    assert [t for _, t, _ in found] == ["neurosim.continual.runner", "neurosim.network.graph"]
    assert floor("neurosim.continual.runner") > floor("neurosim.neurons.bad")
    assert found[1][2] == ["_helper"] and room(found[1][1]) != room("neurosim.neurons.bad")


@pytest.mark.parametrize("pattern", ["REFERENCE.md", "DESIGN.md", "../shared"])
def test_nothing_refers_to_files_outside_the_repository(pattern):
    tops = [ROOT / d for d in ("neurosim", "plugins", "models", "tests", "benchmarks", "data", "docs")]
    files = [p for top in tops if top.exists() for p in top.rglob("*")
             if p.suffix in (".py", ".md", ".toml", ".cfg", ".yml", ".yaml")]
    files += [p for p in ROOT.iterdir() if p.is_file() and p.suffix in (".md", ".toml", ".cfg", ".yml", ".yaml")]
    assert files
    hits = [str(p.relative_to(ROOT)) for p in files if pattern in p.read_text(errors="replace")
            and p != Path(__file__)]
    assert not hits, f"{pattern} mentioned in: {', '.join(hits)}"
