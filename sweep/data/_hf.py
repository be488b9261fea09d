"""Reading one split of a Hugging Face dataset: a hub id, a local data folder, or a folder
written by `save_to_disk`."""

from __future__ import annotations

from pathlib import Path

from sweep.config import HFConfig
from sweep.data._files import Split
from sweep.data._sniff import one_line
from sweep.errors import DataError


def read_hf(src: HFConfig, split: str, text_column: str, label_column: str) -> Split:
    """Read one split of a Hugging Face dataset (hub id, local data folder, or save_to_disk)."""
    import datasets

    where = f"hf {src.path}" + (f"/{src.name}" if src.name else "") + f" split {split!r}"
    local = Path(src.path)
    saved = local.is_dir() and any(
        (local / f).is_file() for f in ("dataset_dict.json", "state.json")
    )
    try:
        if saved:
            # A folder written by save_to_disk is not a load_dataset source; load_from_disk is.
            obj = datasets.load_from_disk(str(local))
            if isinstance(obj, datasets.DatasetDict):
                if split not in obj:
                    raise DataError(
                        f"{where}: no split {split!r}; splits are: {', '.join(obj.keys())}"
                    )
                ds = obj[split]
            elif split == src.train_split:
                ds = obj  # a single saved Dataset is the train split, whatever it is called
            else:
                raise DataError(f"{where}: {src.path} holds a single split; there is no {split!r}")
        else:
            ds = datasets.load_dataset(src.path, src.name, split=split, revision=src.revision)
    except DataError:
        raise
    except Exception as exc:
        # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError for an
        # unknown split, connection errors); all mean "this source cannot be read".
        raise DataError(f"cannot load {where}: {one_line(exc)}") from exc
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in ds.column_names:
            raise DataError(
                f"{where}: no {role} column {column!r}; columns are: {', '.join(ds.column_names)}"
            )
    if len(ds) == 0:
        raise DataError(f"{where}: no rows (empty split)")
    feature = ds.features[label_column]
    class_names = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    df = ds.select_columns([text_column, label_column]).to_pandas()
    return Split(df[text_column], df[label_column], where, "hf", class_names)


# ---------------------------------------------------------------------------------------------
