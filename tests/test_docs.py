"""The documentation: the site builds without warnings, its tutorials and the README's examples run, and the
references cover every module and every experiment-file key.

Code blocks run in order, one namespace per page, in a fresh directory that is on the import path:
```python blocks are executed, a block with ``title="NAME"`` is written to the file NAME (blocks with
the same title are joined, in order, two blank lines apart), and ```bash blocks are ``neurosim``
commands, run in the same process.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurosim import cli
from neurosim.runs import experiment

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def blocks(path: Path) -> list[tuple[str, str | None, str]]:
    """``(language, title or None, code)`` of every fenced block of a markdown file."""
    found = []
    for lang, info, code in FENCE.findall(path.read_text()):
        title = re.search(r'title="([^"]+)"', info)
        found.append((lang, title.group(1) if title else None, code))
    return found


def joined(pieces: list[str]) -> str:
    """The file written from the blocks ``pieces`` of one title (module docstring)."""
    return "\n\n\n".join(piece.rstrip("\n") for piece in pieces) + "\n"


def run_blocks(page: Path, chosen, where: Path, monkeypatch, edit=lambda code: code) -> int:
    """Run the blocks of ``page`` as the module docstring says; returns how many ran."""
    monkeypatch.chdir(where)
    monkeypatch.syspath_prepend(str(where))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.manual_seed(0)
    namespace = {"__name__": f"doc_{page.stem}"}
    files: dict[str, list[str]] = {}
    ran = 0
    for n, (lang, title, code) in enumerate(chosen):
        if title is not None:
            files.setdefault(title, []).append(code)
            (where / title).write_text(joined(files[title]))
            if title.endswith(".py"):  # imported from here, not from a module of that name loaded before
                monkeypatch.delitem(sys.modules, title[:-3], raising=False)
        elif lang == "python":
            exec(compile(edit(code), f"{page.name}, block {n}", "exec"), namespace)
        elif lang == "bash":
            for line in code.strip().splitlines():
                args = shlex.split(line, comments=True)
                if not args:
                    continue
                assert args[0] == "neurosim", f"{page.name}: only neurosim commands run: {line}"
                assert cli.main(args[1:]) == 0, line
        else:
            continue
        ran += 1
    return ran


TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
PAGES = [DOCS / "index.md"] + sorted((DOCS / "concepts").glob("*.md"))


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page, tmp_path, monkeypatch):
    assert run_blocks(page, blocks(page), tmp_path, monkeypatch) >= 2


def test_the_neuron_model_tutorial_builds_the_example_file():
    """The tutorial writes examples/adex.py piece by piece (which test_user_neuron.py checks against
    Brian2 and test_neuron_conformance.py runs through the suite), and quotes the suite's entry."""
    page = DOCS / "tutorials" / "neuron-model.md"
    pieces = [code for _, title, code in blocks(page) if title == "adex.py"]
    assert len(pieces) >= 5
    assert joined(pieces) == (ROOT / "examples" / "adex.py").read_text()
    (quoted,) = [code for lang, _, code in blocks(page) if lang == "text" and "Model(" in code]
    suite = (ROOT / "tests" / "test_neuron_conformance.py").read_text()
    assert " ".join(quoted.split()) in " ".join(suite.split())


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_examples_of_the_other_pages_run(page, tmp_path, monkeypatch):
    run_blocks(page, blocks(page), tmp_path, monkeypatch)


def test_the_site_builds_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "tutorials/plugin/index.html", "api/network/index.html", "experiment-file/index.html"} <= pages
    html = (tmp_path / "site" / "api" / "plugins" / "index.html").read_text()
    assert "Hebbian learning based orthogonal projection" in html  # docstrings of neurosim.plugins reached
    for page in (tmp_path / "site").rglob("*.html"):
        text = page.read_text()
        assert "fonts.googleapis" not in text and ":class:<code>" not in text, page


def test_every_module_is_in_the_api_reference():
    documented = {line[4:].split()[0] for p in (DOCS / "api").glob("*.md") for line in p.read_text().splitlines()
                  if line.startswith("::: ")}
    modules = set()
    for package, folder in (("neurosim", "neurosim"), ("neurosim.plugins", "plugins"), ("neurosim.models", "models")):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] != "__init__":
                modules.add(".".join((package,) + parts))
    assert not modules - documented, f"not in docs/api: {sorted(modules - documented)}"


def accepted_keys() -> dict[str, set[str]]:
    """Every key an experiment file may hold, from the checks' own lists: its sections, the keys of
    the scenario, training and record sections, and the names of models, data, scenarios and learners."""
    return {"sections": set(experiment.SECTIONS), "models": set(experiment.MODELS), "data": set(experiment.DATA),
            "scenarios": set(experiment.SCENARIOS), "learning": set(experiment.LEARNERS),
            "scenario": set(experiment.SCENARIO_KEYS), "training": set(experiment.TRAINING),
            "record": set(experiment.RECORD_KEYS)}


def test_the_experiment_reference_names_every_key():
    text = (DOCS / "experiment-file.md").read_text()
    missing = sorted(f"{where}: {key}" for where, names in accepted_keys().items() for key in names
                     if f"`{key}`" not in text)
    assert not missing, f"docs/experiment-file.md does not mention: {missing}"


def test_the_experiment_reference_example_builds(tmp_path):
    (lang, title, code), = [b for b in blocks(DOCS / "experiment-file.md") if b[1] == "full.toml"]
    (tmp_path / title).write_text(code)
    runner = experiment.build(experiment.load(tmp_path / title), progress=False)
    assert len(runner.scenario) == 3 and [p.name for p in runner.plugins] == ["ewc", "hlop"]


README = ROOT / "README.md"
#: Scaled-down versions of the README's long examples: what is replaced by what (each must be found).
FAST = {
    "ns.digits()": {"n_tasks=5": "n_tasks=2", "epochs=20": "epochs=1"},
    "net.plasticity(": {"lif_reservoir(10_000": "lif_reservoir(1_000", "steps=100_000": "steps=2_000"},
}


def readme_python() -> list[str]:
    return [code for lang, _, code in blocks(README) if lang == "python"]


def scaled(code: str) -> str:
    for marker, edits in FAST.items():
        if marker in code:
            for old, new in edits.items():
                assert old in code, f"README example changed: {old!r} not found; update FAST"
                code = code.replace(old, new)
    return code


def test_the_readme_has_its_examples():
    codes = readme_python()
    assert len(codes) >= 4 and sum("fsdd(" in c for c in codes) == 1
    assert all(any(marker in c for c in codes) for marker in FAST)


@pytest.mark.parametrize("index", [i for i, c in enumerate(readme_python()) if "fsdd(" not in c])
def test_readme_example_runs(index, tmp_path, monkeypatch):
    """Each python block of the README in a fresh namespace; the long ones scaled down (FAST); the one
    on the spoken-digit set (real data, long training) in the slow test below."""
    code = readme_python()[index]
    run_blocks(README, [("python", None, scaled(code))], tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("index", [i for i, c in enumerate(readme_python()) if any(m in c for m in FAST)])
def test_readme_example_runs_at_full_size(index, tmp_path, monkeypatch):
    run_blocks(README, [("python", None, readme_python()[index])], tmp_path, monkeypatch)


@pytest.mark.slow
def test_readme_fsdd_example(tmp_path, monkeypatch):
    from neurosim.datasets import data_root

    root = data_root() / "fsdd"
    if not root.is_dir():
        pytest.skip(f"no spoken-digit data at {root} (set NEUROSIM_DATA)")
    (code,) = [c for c in readme_python() if "fsdd(" in c]
    assert '"/path/to/fsdd"' in code and "epochs=30" in code
    code = code.replace('"/path/to/fsdd"', repr(str(root))).replace("epochs=30", "epochs=2")
    run_blocks(README, [("python", None, code)], tmp_path, monkeypatch)


def test_the_tests_the_documentation_names_exist():
    """Every test file (``tests/test_x.py``) and test function (``test_name``, alone or after ``::``)
    that the README or a documentation page names as the evidence of a claim exists."""
    pages = [README] + sorted(DOCS.rglob("*.md"))
    text = "\n".join(page.read_text() for page in pages)
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    files = set(re.findall(r"tests/(test_\w+\.py)", text))
    names = set(re.findall(r"(?:::|`)(test_\w+)(?=[`\s,)])", text)) - {f[:-3] for f in files}
    assert len(files) >= 6 and len(names) >= 12
    assert not [f for f in files if not (ROOT / "tests" / f).is_file()], files
    assert not names - defined, sorted(names - defined)
