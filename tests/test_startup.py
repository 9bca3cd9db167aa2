"""Start-up: what ``import neurosim``, training and the command line load, each in a fresh interpreter."""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "numba", "llvmlite", "h5py", "matplotlib", "sklearn", "scipy", "tqdm.auto")


def loaded_after(code: str) -> set[str]:
    """The modules among :data:`HEAVY` (and numpy) that a fresh interpreter has imported after ``code``."""
    script = (f"import sys\n{code}\nimport json\n"
              f"print(json.dumps(sorted(m for m in {HEAVY + ('numpy',)!r} if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_import_neurosim_loads_nothing_heavy():
    assert loaded_after("import neurosim; neurosim.__version__") == set()


def test_public_names_are_imported_on_first_use():
    assert loaded_after("from neurosim import Network, LIF, Dense, NeurosimError") == {"torch", "numpy"}
    code = "import neurosim\nassert sorted(neurosim.__all__) == sorted(set(dir(neurosim)) & set(neurosim.__all__))"
    assert "torch" not in loaded_after(code)
    with pytest.raises(AssertionError, match="module 'neurosim' has no attribute 'no_such_name'"):
        loaded_after("import neurosim; neurosim.no_such_name")


TRAIN = """
import torch
from neurosim import LI, LIF, Dense, Network
net = Network(dt=1.0)
net.add_input("x", 6)
net.add("h", LIF(8, tau_mem=5.0, spike_fn="atan"))
net.add("o", LI(3))
net.connect("x", "h", Dense(6, 8, scale=3.0))
net.connect("h", "o", Dense(8, 3))
net.run(torch.rand(20, 2, 6)).outputs["o"].sum().backward()
from neurosim.kernels import fused
assert fused.lif_forward is not None
"""


def test_training_loads_neither_numba_nor_storage_nor_plotting():
    assert loaded_after(TRAIN) == {"torch", "numpy"}


def test_continual_learning_without_a_run_file_loads_no_h5py():
    assert loaded_after("from neurosim import Continual, permuted, digits, create_plugin") == {"torch", "numpy"}
    assert "h5py" in loaded_after("from neurosim import RunStore")


def test_a_run_without_gradients_loads_the_compiled_loops():
    code = """
import torch
from neurosim import LIF, Network, Sparse
from neurosim.kernels import registry
net = Network(dt=1.0)
net.add("r", LIF(50))
net.connect("r", "r", Sparse(50, 50, p=0.1, weight=0.2, seed=0))
assert "neurosim.kernels.compiled" not in sys.modules
with torch.no_grad():
    net.run({"r": torch.rand(30, 1, 50) * 2})
from neurosim.kernels import compiled
assert registry.lookup("loop", net.populations["r"]) is compiled.lif_loop
"""
    assert {"numba", "llvmlite"} <= loaded_after(code)


def test_a_kernel_registered_first_is_not_replaced_by_the_built_in_one():
    code = """
from neurosim import LIF
from neurosim.kernels import registry
def mine(*args):
    return None
registry.register("loop", LIF, mine)
assert registry.lookup("loop", LIF(3)) is mine
"""
    loaded_after(code)


@pytest.mark.parametrize("argv, status, message", [
    (["--help"], 0, "Spiking network simulator."),
    (["run", "--help"], 0, "EXPERIMENT.toml, or a built-in"),
    ([], 2, "the following arguments are required: command"),
    (["bogus"], 2, "invalid choice: 'bogus'"),
    (["run", "nope"], 2, "neurosim: error: unknown experiment 'nope'; built-in: permuted-digits, cuba"),
    (["run", "--methods", "baseline,nope"], 2, "neurosim: error: unknown method 'nope'; expected one of"),
    (["run", "cuba", "--duration", "soon"], 2, "invalid float value: 'soon'"),
    (["run", "/no/such/exp.toml"], 2, "neurosim: error: cannot read /no/such/exp.toml: No such file or directory"),
    (["run", "/tmp"], 2, "unknown experiment '/tmp'"),
    (["run", "cuba", "--raster", "/no/such/r.png"], 2, "cannot write the raster to /no/such/r.png: /no/such is not"),
    (["inspect", "/no/such/run.h5"], 2, "neurosim: error: /no/such/run.h5 does not exist"),
    (["resume", "/tmp"], 2, "neurosim: error: /tmp is a directory, not a run file"),
    (["replay", "/no/such/run.h5", "--task", "1"], 2, "/no/such/run.h5 does not exist"),
    (["plot", __file__, "raster", "--out", "/no/such/p.png"], 2, "cannot write /no/such/p.png: /no/such is not a "),
])
def test_the_command_line_answers_help_and_argument_errors_without_torch(argv, status, message):
    script = (f"import sys\nfrom neurosim.cli import main\ntry:\n    code = main({argv!r})\n"
              f"except SystemExit as e:\n    code = e.code\nprint('torch' in sys.modules, 'numpy' in sys.modules)\n"
              f"sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == status
    assert message in proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"


def test_the_command_line_names_are_the_runs_names():
    from neurosim.cli.commands import PLUGINS
    from neurosim.runs.builtin import DEFAULT_EXPERIMENT, METHODS
    from neurosim.runs.experiment import PERMUTED_DIGITS

    assert tuple(PLUGINS) == METHODS
    assert PERMUTED_DIGITS["name"] == DEFAULT_EXPERIMENT
