"""Every malformed experiment file ends `neurosim run` with its one-line message, exit status 2 and
nothing on disk; a valid one still runs."""
import copy
import json
import math
import os
import re

import pytest

from neurosim.cli.main import main
from neurosim.runs import checks, experiment

BASE = {
    "name": "tiny",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 8, "seed": 0},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "seed": 0},
    "training": {"steps": 2, "epochs": 1, "batch_size": 256, "lr": 0.1, "seed": 0},
    "plugins": [],
}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(config: dict) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict) and k != "plugins"]
    if "plugins" in config and not isinstance(config["plugins"], list):
        lines.append(f"plugins = {toml_value(config['plugins'])}")
    for k, v in config.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{key} = {toml_value(x)}" for key, x in v.items()]
    for spec in config.get("plugins", []) if isinstance(config.get("plugins"), list) else []:
        lines.append("[[plugins]]")
        lines += [f"{key} = {toml_value(x)}" for key, x in spec.items()]
    return "\n".join(lines) + "\n"


def setting(path: str, value):
    """A mutation setting ``section.key`` (or a top-level key) to ``value``; ``...`` deletes it."""
    def mutate(c):
        *parents, key = path.split(".")
        node = c
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is ...:
            del node[key]
        else:
            node[key] = value
    return mutate


def plugin(**spec):
    return lambda c: c["plugins"].append(spec)


def both(*mutations):
    def mutate(c):
        for m in mutations:
            m(c)
    return mutate


HUGE = "the experiment needs about .* of memory .*more than this machine's"
INT = "must be an integer, got"
CASES = [
    # the file itself
    ("binary", b"\x00\x01\xfe\xff\x80 binary\x00", r"is not a text file \(not UTF-8 at byte 2\)"),
    ("latin-1", 'name = "caf\xe9"\n'.encode("latin-1"), r"is not a text file \(not UTF-8 at byte 11\)"),
    ("bad toml", b"[model\nname = 1\n", r"is not valid TOML: "),
    ("empty", b"", r"the experiment has no model table"),
    ("unknown section", setting("trainig", {}), r"unknown experiment key 'trainig'; known: name, model"),
    ("name int", setting("name", 5), r"^name must be a string, got 5$"),
    # model
    ("model not table", setting("model", 3), r"model must be a table, got int 3"),
    ("model no name", setting("model.name", ...), r"model.name must be one of: pmnist, delays; got None"),
    ("model unknown", setting("model.name", "resnet"), r"model.name must be one of: pmnist, delays; got 'resnet'"),
    ("hidden 1e9", setting("model.hidden", 10 ** 9), HUGE),
    ("hidden 1e6", setting("model.hidden", 10 ** 6), HUGE),
    ("hidden 0", setting("model.hidden", 0), r"model.hidden must be >= 1, got 0"),
    ("hidden negative", setting("model.hidden", -3), r"model.hidden must be >= 1, got -3"),
    ("hidden float", setting("model.hidden", 2.5), r"model.hidden must be an integer, got 2.5"),
    ("hidden true", setting("model.hidden", True), r"model.hidden must be an integer, got True"),
    ("model seed text", setting("model.seed", "a"), r"model.seed " + INT + " 'a'"),
    ("model seed negative", setting("model.seed", -1), r"model.seed must be an integer in \[0, 9223372036854775808\)"),
    ("model seed huge", setting("model.seed", 10 ** 23), r"model.seed must be an integer in \[0, "),
    ("n_in mismatch", setting("model.n_in", 63), r"input 'x' has 63 channels but the scenario's samples have 64"),
    ("n_out too few", setting("model.n_out", 5), r"output 'out' has 5 neurons but the scenario needs 10"),
    ("model unknown key", setting("model.width", 3), r"unknown model parameter 'width'; known: n_in, hidden"),
    ("model dtype", setting("model.dtype", "float64"), r"model.dtype cannot be set in an experiment file"),
    # scenario
    ("no scenario", setting("scenario", ...), r"the experiment has no scenario table"),
    ("scenario kind", setting("scenario.name", "rotated"), r"scenario.name must be one of: permuted, split; got 'rotated'"),
    ("scenario data", setting("scenario.data", "cifar"), r"scenario.data must be one of: digits, mnist"),
    ("tasks true", setting("scenario.tasks", True), r"scenario.tasks " + INT + " True"),
    ("tasks zero", setting("scenario.tasks", 0), r"scenario.tasks must be an integer >= 1, got 0"),
    ("tasks text", setting("scenario.tasks", "5"), r"scenario.tasks " + INT + " '5'"),
    ("tasks 1e6", setting("scenario.tasks", 10 ** 6), HUGE),
    ("scenario seed float", setting("scenario.seed", 1.5), r"scenario.seed " + INT + " 1.5"),
    ("mode on permuted", setting("scenario.mode", "task"), r"scenario.mode is for split scenarios"),
    ("split mode", both(setting("scenario.name", "split"), setting("scenario.mode", "diagonal")),
     r"scenario.mode must be one of: task, class, domain; got 'diagonal'"),
    ("split tasks", both(setting("scenario.name", "split"), setting("scenario.tasks", 3)),
     r"cannot split 10 classes into 3 equal tasks"),
    ("options on digits", setting("scenario.options", {"jitter": 1}),
     r"unknown scenario.options \(digits\) key 'jitter'; known: n_train, n_test"),
    ("subset size text", setting("scenario.options", {"n_train": "all"}),
     r"scenario.options.n_train must be an integer, got 'all'"),
    ("keep zero", setting("training.keep", 0), r"training.keep must be a positive integer or 'all', got 0"),
    ("options not table", setting("scenario.options", 5), r"scenario.options must be a table, got int 5"),
    ("lags huge", both(setting("scenario.data", "lags"), setting("scenario.options", {"n_train": 10 ** 12})), HUGE),
    ("lags unknown option", both(setting("scenario.data", "lags"), setting("scenario.options", {"bogus": 1})),
     r"unknown scenario.options parameter 'bogus'; known: n_classes"),
    ("lags option type", both(setting("scenario.data", "lags"), setting("scenario.options", {"n_train": "many"})),
     r"scenario.options.n_train must be an integer, got 'many'"),
    ("root int", setting("scenario.root", 5), r"scenario.root must be a string, got 5"),
    ("mnist missing", both(setting("scenario.data", "mnist"), setting("scenario.root", "/nonexistent/mnist")),
     r"IDX file not found: /nonexistent/mnist/"),
    ("scenario unknown key", setting("scenario.shuffle", True), r"unknown scenario key 'shuffle'; known: name"),
    # training
    ("no training", setting("training", ...), r"the experiment has no training table"),
    ("steps true", setting("training.steps", True), r"training.steps " + INT + " True"),
    ("steps 1e7", setting("training.steps", 10 ** 7), HUGE),
    ("steps zero", setting("training.steps", 0), r"training.steps must be an integer >= 1, got 0"),
    ("epochs true", setting("training.epochs", True), r"training.epochs " + INT + " True"),
    ("epochs zero", setting("training.epochs", 0), r"training.epochs must be an integer >= 1, got 0"),
    ("batch 1e9", setting("training.batch_size", 10 ** 9),
     r"training.batch_size 1000000000 is larger than a task's training set \(1348 samples\)"),
    ("batch zero", setting("training.batch_size", 0), r"training.batch_size must be an integer >= 1, got 0"),
    ("lr text", setting("training.lr", "0.1"), r"training.lr must be a number, got '0.1'"),
    ("lr 1e300", setting("training.lr", 1e300), r"training.lr must be in \(0, 1000\], got 1e\+300"),
    ("lr zero", setting("training.lr", 0), r"training.lr must be in \(0, 1000\], got 0"),
    ("lr negative", setting("training.lr", -0.1), r"training.lr must be in \(0, 1000\], got -0.1"),
    ("lr nan", setting("training.lr", float("nan")), r"training.lr must be finite, got nan"),
    ("lr inf", setting("training.lr", float("inf")), r"training.lr must be finite, got inf"),
    ("lr true", setting("training.lr", True), r"training.lr must be a number, got True"),
    ("momentum negative", setting("training.momentum", -1), r"training.momentum must be in \[0, 1\), got -1"),
    ("momentum text", setting("training.momentum", "x"), r"training.momentum must be a number, got 'x'"),
    ("momentum one", setting("training.momentum", 1), r"training.momentum must be in \[0, 1\), got 1"),
    ("momentum adam", both(setting("training.optimizer", "adam"), setting("training.momentum", 0.9)),
     r"training.momentum is for the sgd optimizer"),
    ("optimizer", setting("training.optimizer", "rmsprop"), r"training.optimizer must be one of: sgd, adam"),
    ("seed 1e23", setting("training.seed", 10 ** 23), r"training.seed must be an integer in \[0, "),
    ("seed text", setting("training.seed", "a"), r"training.seed " + INT + " 'a'"),
    ("checkpoint true", setting("training.checkpoint_every", True), r"training.checkpoint_every " + INT + " True"),
    ("checkpoint zero", setting("training.checkpoint_every", 0), r"training.checkpoint_every must be an integer >= 1"),
    ("encoding", setting("training.encoding", "spikes"), r"training.encoding must be one of: current, rate, latency"),
    ("learning", setting("training.learning", "hebb"), r"training.learning must be one of: bptt, three_factor, eprop"),
    ("training unknown key", setting("training.warmup", 3), r"unknown training key 'warmup'; known: steps"),
    ("divergence text", setting("training.divergence", "yes"), r"training.divergence must be a table of factor"),
    ("divergence factor", setting("training.divergence", {"factor": 0.5}),
     r"training.divergence factor must be a number > 1, got 0.5"),
    ("divergence key", setting("training.divergence", {"limit": 3}), r"unknown divergence parameter 'limit'"),
    ("health_every zero", setting("training.health_every", 0), r"training.health_every must be an integer >= 1"),
    # plugins
    ("plugins not list", setting("plugins", 5), r"plugins must be a list of tables, got int"),
    ("plugin no name", plugin(lam=3.0), r"plugins\[0\] must be a table with a name"),
    ("plugin unknown", plugin(name="lwf"), r"unknown plugin 'lwf'; registered: "),
    ("ewc lam text", plugin(name="ewc", lam="x"), r"plugins\[0\] \(ewc\).lam must be a number, got 'x'"),
    ("ewc lam negative", plugin(name="ewc", lam=-1.0), r"plugins\[0\] \(ewc\): lam must be >= 0"),
    ("ewc samples true", plugin(name="ewc", samples=True), r"plugins\[0\] \(ewc\).samples " + INT + " True"),
    ("ewc unknown key", plugin(name="ewc", lamda=1.0), r"unknown plugins\[0\] \(ewc\) parameter 'lamda'; known: "),
    ("si c text", plugin(name="si", c="big"), r"plugins\[0\] \(si\).c must be a number, got 'big'"),
    ("replay memory 1e9", plugin(name="replay", memory_size=10 ** 9), HUGE),
    ("second plugin", both(plugin(name="si"), plugin(name="replay", batch_size=0)),
     r"plugins\[1\] \(replay\): batch_size must be a positive integer, got 0"),
    # record
    ("record samples 1e9", setting("record", {"samples": 10 ** 9}),
     r"record.samples 1000000000 is larger than a task's test set \(449 samples\)"),
    ("record samples zero", setting("record", {"samples": 0}), r"record.samples must be an integer >= 1, got 0"),
    ("record populations text", setting("record", {"populations": "h1"}),
     r"record.populations must be a list of population names, got 'h1'"),
    ("record unknown population", setting("record", {"populations": ["nope"]}),
     r"cannot record spikes of 'nope': not a spiking population"),
    ("record unknown key", setting("record", {"every": 3}), r"unknown record key 'every'; known: samples, populations"),
]


def test_there_are_sixty_or_more_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,change,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_experiment_gives_one_line_and_leaves_nothing(tmp_path, capsys, name, change, message):
    toml = tmp_path / "exp.toml"
    if isinstance(change, bytes):
        toml.write_bytes(change)
    else:
        config = copy.deepcopy(BASE)
        change(config)
        toml.write_text(to_toml(config))
    out = tmp_path / "run.h5"
    rc = main(["run", str(toml), "--store", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("neurosim: error: "), err
    assert re.search(message, err.removeprefix("neurosim: error: ").strip()), err
    assert sorted(os.listdir(tmp_path)) == ["exp.toml"]  # no run file, no temporary file


def test_the_base_experiment_is_valid(tmp_path):
    experiment.check(BASE)
    toml = tmp_path / "exp.toml"
    toml.write_text(to_toml(BASE))
    assert experiment.load(toml) == BASE


def test_memory_estimate_counts_parameters_activations_and_data():
    parts = checks.memory_needed(params=1000, neurons=10, itemsize=4, steps=5, batch=2, optimizer="adam",
                                 momentum=0.0, plugins=[{"name": "ewc"}], tasks=3, data_bytes=100, sample_bytes=8,
                                 data_copies=4)
    assert parts == {"network": 1000 * 4 * 4 + 2 * 1000 * 4 * 3,
                     "activations": 5 * 10 * 4 * (10 * 2 + 3 * checks.EVAL_BATCH), "data": 400}
    assert checks.machine_memory() > 1 << 28


@pytest.mark.parametrize("argv,message", [
    (["run", "--keep", "0", "x.toml"], r"argument --keep: must be a positive integer or all, got '0'"),
    (["resume"], r"the following arguments are required: RUN.h5"),
    (["inspect", "a.h5", "--bogus"], r"unrecognized arguments: --bogus"),
    (["frobnicate"], r"argument command: invalid choice: 'frobnicate'"),
])
def test_argument_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and re.search(message, err), err
