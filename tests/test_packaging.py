"""The distribution: the built wheel holds every package, the metadata states what the code needs (no exact
pins, test-only packages in extras, the Python versions whose standard library it uses), and ``import
neurosim`` and the command need none of the extras."""
import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import neurosim

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAPPED = {"neurosim": "neurosim", "neurosim.plugins": "plugins", "neurosim.models": "models"}
CORE = {"torch", "numpy", "numba", "h5py", "tqdm"}
EXTRAS_ONLY = ["sklearn", "matplotlib", "scipy", "brian2", "snntorch", "dcls", "spikingjelly", "nir",
               "tensorboard", "optuna", "ray", "mkdocs", "pytest"]


def source_packages() -> set[str]:
    found = set()
    for package, folder in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package,) + rel))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, capture_output=True, timeout=600)
    (built,) = out.glob("neurosim-*.whl")
    return built


def test_the_wheel_holds_every_package_and_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == source_packages()
    assert {"neurosim.learning", "neurosim.kernels", "neurosim.plugins", "neurosim.models"} <= packages
    modules = {f"{package.replace('.', '/')}/{m.relative_to(ROOT / folder).as_posix()}"
               for package, folder in MAPPED.items() for m in (ROOT / folder).rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))


def test_the_wheel_metadata(wheel):
    z = zipfile.ZipFile(wheel)
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert f"\nVersion: {neurosim.__version__}\n" in meta
    assert "License-Expression: MIT" in meta and "Requires-Python: >=3.11" in meta
    entry = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "neurosim = neurosim.cli:main" in entry
    for plugin in ("hlop", "ewc", "si", "metaplasticity", "replay"):
        assert re.search(rf"^{plugin} = neurosim\.plugins\.", entry, re.M)


def test_dependencies_are_ranges_and_test_tools_are_extras():
    deps = PYPROJECT["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[;]", d)[0].lower() for d in deps}
    assert names == CORE
    for d in deps:
        assert ">=" in d and "==" not in d and "<" not in d.replace("<=", ""), f"{d}: a lower bound, no pin or cap"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"plots", "data", "sweeps", "nir", "logging", "docs", "test", "bench"} <= set(extras)
    assert any(d.startswith("brian2") for d in extras["test"])


def test_requires_python_covers_the_standard_library_the_code_uses():
    lowest = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups())
    since = {"tomllib": (3, 11)}
    for path in [p for folder in MAPPED.values() for p in (ROOT / folder).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                assert since.get(name.split(".")[0], (3, 0)) <= lowest, f"{path.name} imports {name}"


def test_the_version_is_written_once():
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    literal = re.compile(r"""__version__\s*=\s*["']""")
    hits = [p.name for folder in MAPPED.values() for p in (ROOT / folder).rglob("*.py") if literal.search(p.read_text())]
    assert hits == ["version.py"]


def test_neurosim_and_its_command_need_no_extra():
    """``import neurosim`` (every subpackage) and ``neurosim --help`` with the extras' packages unimportable."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import neurosim, neurosim.cli, neurosim.runs.experiment, neurosim.models, neurosim.plugins
from neurosim.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "usage: neurosim" in done.stdout
