"""`sweep best --export DIR`: the best trial's fine-tuned model as a folder anyone can load.

The folder holds the model and tokenizer in `save_pretrained` form (loadable with
AutoModelForSequenceClassification / AutoTokenizer), `labels.json` (id -> label name) and
`manifest.json` (study, trial, parameters, metrics, data hash, seed, package versions).

The model comes from the folder the sweep kept for the trial (`keep_best`); when it was not kept,
the trial is retrained from its recorded parameters and seed on the same data (checked by content
hash), and the manifest says `"source": "retrained"`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweep.data import default_cache_dir
from sweep.errors import ConfigError, DataError, StorageError
from sweep.study import (
    OWNER_MARKER,
    StudyKey,
    TrialKey,
    chain_key,
    legacy_study_dir,
    model_dir,
)

logger = logging.getLogger(__name__)

_METRIC_ATTRS = (
    TrialKey.BEST_EPOCH,
    TrialKey.EPOCHS_RUN,
    TrialKey.VAL_LOSS,
    TrialKey.VAL_ACCURACY,
    TrialKey.TRAIN_SECONDS,
    TrialKey.SAMPLES_PER_S,
    TrialKey.TOKENS_PER_S,
    TrialKey.PEAK_MEMORY_MB,
    TrialKey.DEVICE,
    TrialKey.N_PARAMS,
    TrialKey.MICRO_BATCH,
    TrialKey.END_REASON,
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a model."""
    versions: dict[str, str | None] = {}
    for name in ("sweep", "torch", "transformers", "tokenizers", "optuna"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _kept_model(artifacts_dir: Path, study_name: str, trial: FrozenTrial) -> Path | None:
    """The folder the sweep kept the trial's model in, or None.

    Retries keep their model with the first trial of their chain (sweep.study.chain_key);
    a study swept by sweep 0.1 kept it under `<artifacts>/<study name>/trial-<number>`.
    """
    kept = model_dir(artifacts_dir, study_name, chain_key(trial))
    if _is_model_dir(kept):
        return kept
    legacy = legacy_study_dir(artifacts_dir, study_name)
    if legacy is not None and _is_model_dir(legacy / f"trial-{trial.number}"):
        return legacy / f"trial-{trial.number}"
    return None


def _check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"--export {dest}: exists and is not an empty directory")
    if not dest.parent.exists():
        raise ConfigError(f"--export {dest}: directory {dest.parent} does not exist")


def _retrain(
    study: optuna.Study, trial: FrozenTrial, into: Path, log: Callable[[str], None]
) -> None:
    """Fine-tune the trial again from its parameters and seed, best epoch's model into `into`."""
    from pydantic import ValidationError

    from sweep.config import StudyConfig
    from sweep.data import load_text_data
    from sweep.search import suggest_params
    from sweep.training import run_trial

    resolved = study.user_attrs.get(StudyKey.CONFIG)
    if resolved is None:
        raise StorageError(f"study {study.study_name!r} has no stored config: cannot retrain")
    try:
        config = StudyConfig.model_validate(resolved)
    except ValidationError as e:
        raise StorageError(
            f"study {study.study_name!r}: stored config no longer valid ({e.errors()[0]['msg']})"
        ) from None
    recorded = study.user_attrs.get(StudyKey.DATA_HASH)
    current = load_text_data(config.data).content_hash
    if recorded is not None and recorded != current:
        raise DataError(
            f"the data of study {study.study_name!r} changed since the sweep "
            f"({study.user_attrs.get(StudyKey.DATA_SOURCE)}: "
            f"hash {current[:12]} != {recorded[:12]}); "
            "cannot retrain the same model"
        )
    # FixedTrial replays the recorded parameters through the same suggest_params the sweep used,
    # so fixed parameters and the seed come out as they did then.
    params = suggest_params(optuna.trial.FixedTrial(trial.params, number=trial.number), config)
    seed = trial.user_attrs.get(TrialKey.SEED)
    if seed is not None and params.seed != seed:
        raise StorageError(
            f"trial {trial.number}: replayed seed {params.seed} differs from recorded {seed}"
        )
    log(f"trial {trial.number}'s model was not kept; retraining it ({params})")
    started = time.perf_counter()
    result = run_trial(
        params,
        config.data,
        config.models,
        cache_dir=default_cache_dir(),
        best_model_dir=into,
        select_by=config.metric.name,
    )
    log(
        f"retrained in {time.perf_counter() - started:.1f} s: best epoch {result.best_epoch}, "
        f"val_loss {result.best_val_loss:.4f} (recorded {trial.user_attrs.get(TrialKey.VAL_LOSS)})"
    )


def _write_labels(folder: Path) -> None:
    """labels.json from the model config's id2label, if the training loop did not write it."""
    labels = folder / "labels.json"
    if labels.exists():
        return
    config = json.loads((folder / "config.json").read_text())
    # The same shape as the training loop writes: {"0": "negative", ...}.
    id2label = config.get("id2label") or {}
    labels.write_text(
        json.dumps({str(k): id2label[k] for k in sorted(id2label, key=int)}, indent=2) + "\n"
    )


def export_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    dest: Path,
    *,
    artifacts_dir: Path,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Write the trial's model, tokenizer, labels.json and manifest.json into `dest`.

    `dest` must not exist or be empty. The folder is assembled next to `dest` and renamed into
    place, so a failed export leaves nothing half-written. Returns the manifest.
    """
    _check_destination(dest)
    kept = _kept_model(artifacts_dir, study.study_name, trial)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        folder = staging / "model"
        if kept is not None:
            # The marker says sweep may delete the kept folder; the user's copy is theirs.
            shutil.copytree(kept, folder, ignore=shutil.ignore_patterns(OWNER_MARKER))
            source = "kept"
        else:
            _retrain(study, trial, folder, log)
            (folder / OWNER_MARKER).unlink(missing_ok=True)
            source = "retrained"
        if not _is_model_dir(folder):
            raise StorageError(f"trial {trial.number}: no model was written to {folder}")
        _write_labels(folder)
        attrs = trial.user_attrs
        manifest = {
            "study": study.study_name,
            "trial": trial.number,
            "metric": study.user_attrs.get(StudyKey.METRIC),
            # The metric is the first objective; a multi-objective study's second is the cost.
            "direction": study.directions[0].name.lower(),
            "value": trial.values[0] if trial.values else None,
            "values": trial.values,
            "params": trial.params,
            "metrics": {str(k): attrs[k] for k in _METRIC_ATTRS if k in attrs},
            "seed": trial.user_attrs.get(TrialKey.SEED),
            "data_content_hash": study.user_attrs.get(StudyKey.DATA_HASH),
            "data_source": study.user_attrs.get(StudyKey.DATA_SOURCE),
            "labels": json.loads((folder / "labels.json").read_text()),
            "source": source,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        folder.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
