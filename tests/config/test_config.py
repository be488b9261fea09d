"""Study files: loading, resolving, and one-line errors that say where the mistake is."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweep.config import (
    PARAM_KINDS,
    PRESETS,
    HFConfig,
    StudyConfig,
    bundled_demo_path,
    load_study,
)
from sweep.errors import ConfigError
from tests.conftest import REPO

VALID = """\
name: sst2-gpt2
data:
  train: data/train.csv
  validation: data/validation.csv
  text_column: text
  label_column: label
  max_length: 64
  limit_train: 8000
models:
  nano:  {n_layer: 2, n_embd: 64, n_head: 2}
  micro: {n_layer: 4, n_embd: 128, n_head: 4}
  minilm: {pretrained: org/all-MiniLM}
parameters:
  learning_rate: {min: 1e-5, max: 1.0e-3, log: true}
  batch_size: {values: [16, 32, 64]}
  epochs: {min: 1, max: 4}
  model_size: {values: [nano, micro]}
  weight_decay: 0.01
metric: {name: val_loss, goal: minimize}
sampler: tpe
pruner: hyperband
trials: 50
seed: 0
enqueue:
  - {learning_rate: 1.0e-5, batch_size: 32, epochs: 4, model_size: micro}
"""


def write(folder: Path, text: str, name: str = "s.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> StudyConfig:
    return load_study(write(tmp_path, text))


def test_valid_file_loads_with_types_and_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, VALID)
    assert config.name == "sst2-gpt2"
    assert config.data.train == tmp_path / "data" / "train.csv"
    assert config.data.validation_fraction == 0.2
    lr = config.parameters["learning_rate"]
    assert (lr.min, lr.max, lr.log) == (1e-5, 1e-3, True)
    assert isinstance(lr.min, float)  # `1e-5` is a string to YAML 1.1, a number to us
    assert config.parameters["batch_size"].values == (16, 32, 64)
    assert config.parameters["weight_decay"].fixed
    assert config.parameters["weight_decay"].value == 0.01
    assert (config.metric.name, config.metric.goal) == ("val_loss", "minimize")
    assert config.pruner.name == "hyperband" and config.pruner.settings == {}
    assert config.enqueue == [
        {"learning_rate": 1e-5, "batch_size": 32, "epochs": 4, "model_size": "micro"}
    ]
    assert config.storage is None and config.keep_best == 1
    assert config.source_path == tmp_path / "s.yaml"
    assert config.max_epochs() == 4


def test_resolved_round_trips_through_json_and_yaml(tmp_path: Path) -> None:
    config = load_text(tmp_path, VALID)
    resolved = config.resolved()
    assert json.loads(json.dumps(resolved)) == resolved
    assert StudyConfig.model_validate(resolved) == config
    # Written back as a study file elsewhere, it is the same study (paths are absolute now).
    resolved.pop("source_path")
    again = load_study(write(tmp_path / "elsewhere", yaml.safe_dump(resolved)))
    assert again.model_copy(update={"source_path": None}) == config.model_copy(
        update={"source_path": None}
    )


def test_relative_paths_resolve_against_the_study_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "studies" / "local-model").mkdir(parents=True)
    text = VALID.replace("org/all-MiniLM", "./models/minilm").replace(
        "micro: {n_layer: 4, n_embd: 128, n_head: 4}", "micro: {pretrained: local-model}"
    )
    text = text.replace(
        "models:\n", "models:\n  hub: {pretrained: org/bert, trust_remote_code: true}\n"
    )
    monkeypatch.chdir(tmp_path / "studies" / "local-model")  # the working directory must not matter
    config = load_study(write(tmp_path / "studies", text))
    assert config.data.train == tmp_path / "studies" / "data" / "train.csv"
    assert config.models["minilm"].pretrained == str(tmp_path / "studies" / "models" / "minilm")
    assert config.models["micro"].pretrained == str(tmp_path / "studies" / "local-model")
    assert config.models["hub"].pretrained == "org/bert"  # not a local path: a hub id
    assert config.models["hub"].trust_remote_code is True


def test_numbers_written_as_strings_become_numbers(tmp_path: Path) -> None:
    text = VALID.replace("{values: [16, 32, 64]}", "{values: ['16', 32]}").replace(
        "weight_decay: 0.01", "weight_decay: 1e-2\n  warmup_ratio: '5e-2'"
    )
    text = text.replace("{min: 1e-5, max: 1.0e-3, log: true}", "{values: [1e-5, '3e-4', 1.0e-3]}")
    config = load_text(tmp_path, text)
    assert config.parameters["learning_rate"].values == (1e-5, 3e-4, 1e-3)
    assert all(type(v) is float for v in config.parameters["learning_rate"].values)
    assert config.parameters["batch_size"].values == (16, 32)
    assert config.parameters["weight_decay"].value == 0.01
    assert config.parameters["warmup_ratio"].value == 0.05
    assert config.enqueue[0]["learning_rate"] == 1e-5


def test_defaults_and_shorthands(tmp_path: Path) -> None:
    text = """\
name: small
data: {demo: true}
models: {only: {preset: nano}}
parameters: {learning_rate: 1e-3, batch_size: 32, epochs: 2}
metric: val_accuracy
pruner: {name: median, n_warmup_steps: 1, n_startup_trials: '3'}
keep_best: 0
storage: sqlite:///x.db
"""
    config = load_text(tmp_path, text)
    assert config.parameters["model_size"].value == "only"  # one model: model_size may be left out
    assert (config.metric.name, config.metric.goal) == ("val_accuracy", "maximize")
    assert config.pruner.settings == {"n_warmup_steps": 1, "n_startup_trials": 3}
    assert config.sampler == "tpe" and config.trials == 50 and config.keep_best == 0
    assert config.models["only"].kind == "preset"
    hf = load_text(tmp_path, text.replace("{demo: true}", "{hf: {path: glue, name: sst2}}"))
    assert hf.data.hf.path == "glue" and hf.data.hf.train_split == "train"


# (replace this, with that, fragments the one-line error must contain)
BAD = [
    ("text_column", "txt_column", ["s.yaml:5:3", "data.txt_column", "'text_column'"]),
    (
        "  limit_train: 8000",
        "  limit_train: 8000\n  demo: true",
        ["s.yaml:2:1", "data:", "train and demo"],
    ),
    (
        "  train: data/train.csv\n  validation: data/validation.csv\n",
        "",
        ["s.yaml:2:1", "data:", "exactly one of train, hf or demo"],
    ),
    ("max_length: 64", "max_length: 4", ["s.yaml:7:3", "data.max_length", ">= 8"]),
    ("max_length: 64", "max_length: sixty", ["s.yaml:7:3", "data.max_length", "integer"]),
    ("trials: 50", "trials: 0", ["s.yaml:22:1", "trials", ">= 1"]),
    ("trials: 50", "trials: true", ["s.yaml:22:1", "trials", "integer"]),
    ("trials: 50", "trails: 50", ["s.yaml:22:1", "trails", "did you mean 'trials'"]),
    ("seed: 0", "seed: 0\nsource_path: /x", ["s.yaml:24:1", "source_path", "unknown key"]),
    ("sampler: tpe", "sampler: tpee", ["s.yaml:20:1", "sampler", "did you mean 'tpe'"]),
    ("pruner: hyperband", "pruner: medain", ["s.yaml:21:1", "pruner", "did you mean 'median'"]),
    (
        "pruner: hyperband",
        "pruner: {name: hyperband, reduction_factr: 3}",
        ["s.yaml:21:27", "pruner.reduction_factr", "did you mean 'reduction_factor'"],
    ),
    (
        "pruner: hyperband",
        "pruner: {name: median, n_warmup_steps: -1}",
        ["s.yaml:21:24", "pruner.n_warmup_steps", ">= 0"],
    ),
    (
        "pruner: hyperband",
        "pruner: {name: hyperband, min_resource: 9}",
        ["pruner.min_resource", "max epochs 4"],
    ),
    ("pruner: hyperband", "pruner: {name: none, x: 1}", ["pruner.x", "takes no settings"]),
    ("goal: minimize", "goal: maximize", ["s.yaml:19:26", "metric.goal", "minimize"]),
    ("name: val_loss", "name: val_acc", ["s.yaml:19:10", "metric.name", "'val_accuracy'"]),
    (
        "{min: 1, max: 4}",
        "{min: 5, max: 4}",
        ["s.yaml:16:12", "parameters.epochs.min", "min (5) > max (4)"],
    ),
    ("{min: 1, max: 4}", "{min: 1, mx: 4}", ["parameters.epochs.mx", "did you mean 'max'"]),
    ("{min: 1, max: 4}", "{min: 1}", ["parameters.epochs", "max missing"]),
    ("{min: 1, max: 4}", "{min: 0, max: 4}", ["parameters.epochs.min", ">= 1"]),
    ("{min: 1, max: 4}", "{min: 1, max: 4.5}", ["parameters.epochs.max", "integer"]),
    ("{min: 1, max: 4}", "{min: 1, max: 4, step: 2}", ["parameters.epochs.max", "multiple"]),
    ("{min: 1, max: 4}", "{min: 1, max: 4, values: [1]}", ["parameters.epochs", "exactly one"]),
    ("{min: 1, max: 4}", "[1, 2]", ["parameters.epochs", "values: [...]"]),
    ("min: 1e-5", "min: 0", ["s.yaml:14:19", "parameters.learning_rate.min", "> 0"]),
    ("min: 1e-5", "min: -1", ["parameters.learning_rate.min", "> 0"]),
    ("log: true", "log: true, step: 0.1", ["parameters.learning_rate.step", "log range"]),
    ("log: true", "log: maybe", ["parameters.learning_rate.log", "true or false"]),
    ("{values: [16, 32, 64]}", "{values: []}", ["s.yaml:15:16", "batch_size.values", "empty"]),
    ("{values: [16, 32, 64]}", "{values: [16, 32, 32]}", ["batch_size.values[2]", "duplicate"]),
    ("{values: [16, 32, 64]}", "{values: [16, 0.5]}", ["batch_size.values[1]", "integer"]),
    ("{values: [16, 32, 64]}", "{values: 16}", ["batch_size.values", "must be a list"]),
    (
        "{values: [nano, micro]}",
        "{values: [nano, mini]}",
        ["s.yaml:17:31", "parameters.model_size.values[1]", "'mini' is not in models"],
    ),
    ("{values: [nano, micro]}", "{min: 1, max: 2}", ["parameters.model_size", "not a range"]),
    ("  model_size: {values: [nano, micro]}\n", "", ["s.yaml:13:1", "parameters", "model_size"]),
    ("  epochs: {min: 1, max: 4}\n", "", ["parameters", "missing parameter 'epochs'"]),
    ("weight_decay: 0.01", "weight_decay: -1", ["parameters.weight_decay", ">= 0"]),
    ("weight_decay: 0.01", "wieght_decay: 0.01", ["s.yaml:18:3", "did you mean 'weight_decay'"]),
    ("weight_decay: 0.01", "warmup_ratio: 1.5", ["parameters.warmup_ratio", "[0, 1)"]),
    (
        "epochs: 4, model",
        "epochs: 5, model",
        ["s.yaml:25:", "enqueue[0].epochs", "outside the range 1..4"],
    ),
    ("epochs: 4, model", "epoch: 4, model", ["enqueue[0].epoch", "did you mean 'epochs'"]),
    ("batch_size: 32, epochs", "batch_size: 48, epochs", ["enqueue[0].batch_size", "not one of"]),
    ("model_size: micro}", "model_size: minilm}", ["enqueue[0].model_size", "not one of"]),
    ("epochs: 4, model", "weight_decay: 0.5, model", ["enqueue[0].weight_decay", "fixed at 0.01"]),
    ("  - {learning_rate", "  - 3\n  - {learning_rate", ["enqueue[0]", "mapping"]),
    ("n_head: 2}", "n_head: 3}", ["s.yaml:10:23", "models.nano.n_embd", "multiple of n_head"]),
    ("n_head: 2}", "n_hed: 2}", ["s.yaml:10:35", "models.nano.n_hed", "did you mean 'n_head'"]),
    (
        "n_head: 2}",
        "n_head: 2, preset: nano}",
        ["models.nano", "got n_layer/n_embd/n_head and preset"],
    ),
    ("{n_layer: 2, n_embd: 64, n_head: 2}", "{n_layer: 2}", ["models.nano", "n_embd missing"]),
    (
        "{pretrained: org/all-MiniLM}",
        "{preset: nanoo}",
        ["models.minilm.preset", "did you mean 'nano'"],
    ),
    ("n_head: 2}", "n_head: 2, trust_remote_code: true}", ["models.nano.trust_remote_code"]),
    ("name: sst2-gpt2\n", "", ["s.yaml:1:1", "name", "missing required key"]),
    ("name: sst2-gpt2", "name: [a]", ["s.yaml:1:1", "name", "string"]),
    ("sampler: tpe", "sampler: grid", ["sampler", "learning_rate is a continuous range"]),
    ("trials: 50", "trials: 50\ntrials: 3", ["s.yaml:23:1", "duplicate key 'trials'"]),
    ("trials: 50", "trials: [50", ["s.yaml:23:", "invalid YAML"]),
    ("trials: 50", "trials: !!float abc", ["s.yaml", "invalid YAML"]),
    (
        "  validation: data/validation.csv\n",
        "  validation_fraction: 1.5\n",
        ["validation_fraction", "< 1"],
    ),
    (
        "  train: data/train.csv\n",
        "  hf: {path: glue, nme: sst2}\n",
        ["s.yaml:3:20", "data.hf.nme", "did you mean 'name'"],
    ),
]


@pytest.mark.parametrize(("old", "new", "fragments"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_input_is_one_line_config_error(tmp_path: Path, old, new, fragments) -> None:
    assert old in VALID
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, VALID.replace(old, new, 1))
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(str(tmp_path / "s.yaml"))
    for fragment in fragments:
        assert fragment in message


def test_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    text = VALID.replace("seed: 0", f"seed: !!python/object/apply:os.system ['touch {marker}']")
    with pytest.raises(ConfigError, match=r"s\.yaml:23:7: invalid YAML.*python/object/apply"):
        load_text(tmp_path, text)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- a\n- b\n", "s.yaml:1:1: a study file is a mapping"),
        ("just words\n", "a mapping"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
        ("name: x\n\tdata: 1\n", "s.yaml:2:1: invalid YAML"),
        ("a: &x [*x]\n", "a"),
    ],
)
def test_not_a_study(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_text(tmp_path, text)
    assert fragment in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_study(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_study(tmp_path / "bin.yaml")


def test_bundled_demo_loads() -> None:
    path = bundled_demo_path()
    assert path.name == "demo.yaml" and path.parent.name == "studies"
    config = load_study(path)
    assert config.name == "demo"
    assert config.data.demo and config.data.max_length == 32
    assert {n: (m.n_layer, m.n_embd, m.n_head) for n, m in config.models.items()} == {
        "nano": (2, 64, 2),
        "micro": (4, 128, 4),
    }
    lr = config.parameters["learning_rate"]
    assert (lr.min, lr.max, lr.log) == (1e-4, 3e-2, True)
    assert config.parameters["batch_size"].values == (16, 32, 64)
    assert (config.parameters["epochs"].min, config.parameters["epochs"].max) == (1, 4)
    assert config.parameters["model_size"].values == ("nano", "micro")
    assert (config.sampler, config.pruner.name, config.trials, config.seed) == (
        "tpe",
        "hyperband",
        50,
        0,
    )
    assert config.storage == "sqlite:///sweep.db"
    assert "synthetic" in path.read_text()


def test_config_import_stays_light() -> None:
    # sweep status / report load study files and must not pay for torch (or optuna here).
    code = "import sys, sweep.config; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_data_section_is_the_data_layer_s_one_schema(tmp_path: Path) -> None:
    data = load_text(tmp_path, VALID).data
    assert data.train == tmp_path / "data" / "train.csv" and data.train.is_absolute()
    assert (data.max_length, data.limit_train, data.hf, data.demo) == (64, 8000, None, False)
    hash(data)  # frozen: per-process caches of the data key on it
    text = VALID.replace(
        "  train: data/train.csv\n  validation: data/validation.csv\n",
        "  hf: {path: glue, name: sst2, validation_split: validation}\n",
    )
    hf = load_text(tmp_path, text).data.hf
    assert hf == HFConfig(path="glue", name="sst2", validation_split="validation")


@pytest.mark.parametrize(
    ("edit", "where", "words"),
    [
        # The data layer's own limits, reported where the file says them (they were once only
        # checked when the run loaded the data, without a line).
        ("demo_size: 25", "data.demo_size", ">= 30"),
        ("label_column: text", "data.label_column", "both 'text'"),
        ("max_length: 4", "data.max_length", ">= 8"),
    ],
)
def test_data_limits_are_reported_with_the_file_s_line(
    tmp_path: Path, edit: str, where: str, words: str
) -> None:
    text = (
        "name: t\ndata:\n  demo: true\n  " + edit + "\n"
        "models: {n: {preset: nano}}\n"
        "parameters: {learning_rate: 0.001, batch_size: 16, epochs: 1}\n"
    )
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4:3: {where}: ") and words in message


def test_model_shapes(tmp_path: Path) -> None:
    text = VALID.replace("models:\n", "models:\n  p: {preset: small}\n")
    models = load_text(tmp_path, text).models
    assert models["nano"].shape == (2, 64, 2)
    assert models["minilm"].pretrained == "org/all-MiniLM" and models["minilm"].shape is None
    assert models["p"].shape == PRESETS["small"] == (12, 768, 12)


# ---- property: any mutation of a valid file ends in a StudyConfig or a ConfigError ------------

KEYS = sorted(
    set(StudyConfig.model_fields)
    | set(PARAM_KINDS)
    | {"train", "hf", "demo", "values", "min", "max", "log", "step", "name", "goal", "preset"}
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["1e-5", "nano", "auto", "-1", "0", "", "tpe", "val_loss", "~nobody/x", "./x"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
SNIPPETS = [
    "!!python/object/apply:os.system ['true']",
    "!!float abc",
    "!!int x",
    "!!timestamp x",
    "!!binary ===",
    "&a [*a]",
    "*nope",
    "{",
    "]",
    ": ",
    "\n- ",
    "\t",
    "---\n",
    "? [a]\n: 1\n",
    "<<: 3\n",
    "\x00",
]


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _parent(obj: object, path: tuple) -> object:
    for part in path[:-1]:
        obj = obj[part]
    return obj


@settings(
    max_examples=int(__import__("os").environ.get("HYP_N", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutations_end_in_config_or_config_error(tmp_path: Path, data: st.DataObject) -> None:
    study = yaml.safe_load(VALID)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = [p for p in _paths(study) if p]
        path = data.draw(st.sampled_from(paths), label="path")
        parent = _parent(study, path)
        op = data.draw(st.sampled_from(["delete", "rename", "set"]), label="op")
        if op == "delete":
            del parent[path[-1]]
        elif op == "rename" and isinstance(parent, dict):
            new_key = data.draw(st.sampled_from(KEYS) | st.text(max_size=10), label="key")
            parent[new_key] = parent.pop(path[-1])
        else:
            parent[path[-1]] = copy.deepcopy(data.draw(values, label="value"))
    text = yaml.safe_dump(study, allow_unicode=True, sort_keys=False)
    if data.draw(st.booleans(), label="insert text"):
        at = data.draw(st.integers(0, len(text)), label="at")
        junk = data.draw(st.sampled_from(SNIPPETS) | st.text(max_size=20), label="junk")
        text = text[:at] + junk + text[at:]
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_study(path)
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith(str(path))
    else:
        assert isinstance(config, StudyConfig)
        json.dumps(config.resolved())


@pytest.mark.parametrize("study", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_study_in_the_repository_loads(study: Path) -> None:
    config = load_study(study)
    assert config.name == study.stem
    assert all(m.shape or m.pretrained for m in config.models.values())


def test_the_repository_demo_is_the_bundled_demo() -> None:
    repo_demo = REPO / "studies" / "demo.yaml"
    assert repo_demo.read_text() == bundled_demo_path().read_text()
