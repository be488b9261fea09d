"""sweep.data: reading, labels, splits, the demo dataset, and every bad input (real files)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sweep.config import DataConfig as DataSpec
from sweep.config import HFConfig as HFSource
from sweep.data import demo_dataset, load_text_data
from sweep.errors import DataError

LABELS3 = ("neg", "neu", "pos")


def _frame(n: int = 60, labels: tuple = LABELS3, prefix: str = "row") -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"{prefix} {i} says {labels[i % len(labels)]}" for i in range(n)],
         "label": [labels[i % len(labels)] for i in range(n)]}
    )  # fmt: skip


def _write(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` in the format the suffix names."""
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        with path.open("w") as f:
            for row in df.to_dict("records"):
                f.write(
                    json.dumps({k: (None if v is None or v != v else v) for k, v in row.items()})
                )
                f.write("\n")
    elif path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        path.write_text(df.to_csv(index=False))
    return path


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `datasets`' own cache (arrow files of loaded sources) inside the test's tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_reads_each_format_with_its_validation_file(tmp_path: Path, suffix: str) -> None:
    train = _write(_frame(30), tmp_path / f"train{suffix}")
    val = _write(_frame(9, prefix="val"), tmp_path / f"val{suffix}")
    data = load_text_data(DataSpec(train=train, validation=val))
    assert data.train_texts == _frame(30)["text"].tolist()  # file order kept
    assert data.val_texts == _frame(9, prefix="val")["text"].tolist()
    assert data.label_names == LABELS3
    assert data.train_labels.dtype == np.int64
    assert data.train_labels.tolist() == [i % 3 for i in range(30)]
    assert data.val_labels.tolist() == [i % 3 for i in range(9)]
    assert data.dropped_empty == 0
    assert str(train) in data.source and str(val) in data.source
    assert len(data.content_hash) == 64


def test_texts_are_read_verbatim(tmp_path: Path) -> None:
    # pandas would turn "NA"/"null"/"None" into missing values and "007" into 7 by default.
    texts = ["NA", "null", "None", "007", "a, quoted\nline", "nan"]
    df = pd.DataFrame({"text": texts, "label": ["a", "b"] * 3})
    data = load_text_data(
        DataSpec(train=_write(df, tmp_path / "t.csv"), validation=_write(df, tmp_path / "v.csv"))
    )
    assert data.train_texts == texts


def test_custom_column_names(tmp_path: Path) -> None:
    df = _frame(30).rename(columns={"text": "sentence", "label": "stars"})
    spec = DataSpec(
        train=_write(df, tmp_path / "t.parquet"), text_column="sentence", label_column="stars"
    )
    assert len(load_text_data(spec).train_texts) == 24


@pytest.mark.parametrize(
    ("labels", "names", "ids"),
    [
        (["pos", "neg", "neg", "mid"], ("mid", "neg", "pos"), [2, 1, 1, 0]),  # sorted names
        ([2, 0, 1, 1], ("0", "1", "2"), [2, 0, 1, 1]),  # 0..K-1 kept
        ([5, 1, 1, 5], ("1", "5"), [1, 0, 0, 1]),  # gaps: sorted distinct ints -> 0..K-1
        ([-1, 1, 1, -1], ("-1", "1"), [0, 1, 1, 0]),
    ],
)
def test_label_mapping(tmp_path: Path, labels: list, names: tuple, ids: list) -> None:
    df = pd.DataFrame({"text": [f"t{i}" for i in range(4)], "label": labels})
    for suffix in (".csv", ".jsonl"):
        data = load_text_data(
            DataSpec(
                train=_write(df, tmp_path / f"train{suffix}"),
                validation=_write(df, tmp_path / f"val{suffix}"),
            )
        )
        assert data.label_names == names
        assert data.train_labels.tolist() == ids
        assert data.val_labels.tolist() == ids


def test_blank_column_names_are_not_duplicates(tmp_path: Path) -> None:
    # A spreadsheet's export ends rows with empty columns ("text,label,,"); no one names them.
    path = tmp_path / "t.csv"
    path.write_text("text,label,,\n" + "".join(f"t{i},{'ab'[i % 2]},,\n" for i in range(10)))
    assert load_text_data(DataSpec(train=path)).label_names == ("a", "b")


def test_multiline_texts_in_a_large_csv_stay_one_row_each(tmp_path: Path) -> None:
    # A quoted line break belongs to its text. pyarrow cuts a file in 1 MiB blocks at line breaks
    # unless told that values hold them, and a cut inside such a text made two bad rows of it.
    texts = [
        f"first line of {i}\nsecond line, with a comma\n\nafter a blank line" for i in range(40_000)
    ]
    df = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(len(texts))]})
    path = _write(df, tmp_path / "t.csv")
    assert path.stat().st_size > 2 * 2**20
    data = load_text_data(DataSpec(train=path))
    assert sorted(data.train_texts + data.val_texts) == sorted(texts)
    assert data.label_names == ("0", "1")


def test_jsonl_with_mixed_label_types_still_reads_every_line(tmp_path: Path) -> None:
    # The slow path (json.loads per line) keeps the columns pyarrow cannot type and the file order.
    path = tmp_path / "t.jsonl"
    lines = [json.dumps({"text": f"t{i}", "label": [1, "x"][i % 2]}) for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    data = load_text_data(DataSpec(train=path, validation=path))
    assert data.val_texts == [f"t{i}" for i in range(10)]
    assert data.label_names == ("1", "x")


def test_mixed_number_and_string_labels_agree(tmp_path: Path) -> None:
    # JSON lines with 1 in one file and "1" in the other are the same class.
    tr = tmp_path / "t.jsonl"
    tr.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n')
    va = tmp_path / "v.jsonl"
    va.write_text('{"text": "c", "label": "1"}\n')
    data = load_text_data(DataSpec(train=tr, validation=va))
    assert data.label_names == ("1", "x")
    assert data.val_labels.tolist() == [0]


def test_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    df = _frame(30)
    df.loc[[3, 7], "text"] = ["", "   "]
    val = _frame(9)
    val.loc[0, "text"] = None
    data = load_text_data(
        DataSpec(train=_write(df, tmp_path / "t.csv"), validation=_write(val, tmp_path / "v.csv"))
    )
    assert data.dropped_empty == 3
    assert len(data.train_texts) == 28 and len(data.val_texts) == 8
    assert len(data.train_labels) == 28


def test_stratified_split_is_proportional_and_seeded(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 70 + ["b"] * 30})
    train = _write(df, tmp_path / "t.csv")
    data = load_text_data(DataSpec(train=train, validation_fraction=0.2, split_seed=3))
    assert len(data.val_texts) == 20 and len(data.train_texts) == 80
    assert Counter(data.val_labels.tolist()) == {0: 14, 1: 6}
    assert Counter(data.train_labels.tolist()) == {0: 56, 1: 24}
    assert sorted(data.train_texts + data.val_texts) == sorted(df["text"])  # a partition
    assert data.train_texts == sorted(data.train_texts, key=lambda t: int(t[1:]))  # file order
    again = load_text_data(DataSpec(train=train, validation_fraction=0.2, split_seed=3))
    assert again.val_texts == data.val_texts and again.content_hash == data.content_hash
    other = load_text_data(DataSpec(train=train, validation_fraction=0.2, split_seed=4))
    assert other.val_texts != data.val_texts and other.content_hash != data.content_hash
    assert "stratified 0.2 split, seed 3" in data.source


def test_limit_train_subsamples_stratified_and_seeded(tmp_path: Path) -> None:
    df = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["a"] * 150 + ["b"] * 50})
    train = _write(df, tmp_path / "t.csv")
    full = load_text_data(DataSpec(train=train))
    small = load_text_data(DataSpec(train=train, limit_train=40))
    assert len(small.train_texts) == 40
    assert Counter(small.train_labels.tolist()) == {0: 30, 1: 10}
    assert set(small.train_texts) <= set(full.train_texts)
    assert small.val_texts == full.val_texts  # the validation split is not touched
    assert load_text_data(DataSpec(train=train, limit_train=40)).train_texts == small.train_texts
    assert load_text_data(DataSpec(train=train, limit_train=10_000)).train_texts == full.train_texts


def test_content_hash_follows_file_content(tmp_path: Path) -> None:
    path = _write(_frame(30), tmp_path / "t.csv")
    first = load_text_data(DataSpec(train=path)).content_hash
    assert load_text_data(DataSpec(train=path)).content_hash == first
    df = _frame(30)
    df.loc[5, "text"] = "changed"
    _write(df, path)
    assert load_text_data(DataSpec(train=path)).content_hash != first


def test_demo_dataset_is_deterministic_balanced_and_synthetic() -> None:
    import sweep.data._demo as demo_module

    assert "SYNTHETIC" in (demo_module.__doc__ or "")
    a = demo_dataset(600, seed=0)
    assert a == demo_dataset(600, seed=0)
    assert a[0] != demo_dataset(600, seed=1)[0]
    train_texts, train_labels, val_texts, val_labels = a
    assert len(train_texts) == 600 and len(val_texts) == 150
    for labels in (train_labels, val_labels):
        counts = Counter(labels)
        assert set(counts) == {"negative", "neutral", "positive"}
        assert all(abs(n / len(labels) - 1 / 3) < 0.05 for n in counts.values())
    assert max(len(t.split()) for t in train_texts) <= 27
    assert len(set(train_texts)) > 500  # not a handful of templates repeated
    # Word order decides: contrast words appear, and in both directions.
    assert any(" but " in t for t in train_texts) and any(", although" in t for t in train_texts)


def test_demo_spec() -> None:
    data = load_text_data(DataSpec(demo=True, demo_size=300))
    assert data.label_names == ("negative", "neutral", "positive")
    assert len(data.train_texts) == 300 and len(data.val_texts) == 75
    assert "synthetic" in data.source
    assert data.content_hash == load_text_data(DataSpec(demo=True, demo_size=300)).content_hash


def test_hf_local_folder_through_load_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "hfdata"
    folder.mkdir()
    _write(_frame(30), folder / "train.csv")
    _write(_frame(9, prefix="val"), folder / "validation.csv")
    data = load_text_data(DataSpec(hf=HFSource(path=str(folder), validation_split="validation")))
    assert data.train_texts == _frame(30)["text"].tolist()
    assert data.val_texts == _frame(9, prefix="val")["text"].tolist()
    assert data.label_names == LABELS3
    assert data.source.startswith(f"hf {folder}")
    split = load_text_data(DataSpec(hf=HFSource(path=str(folder)), validation_fraction=0.2))
    assert len(split.train_texts) == 24 and len(split.val_texts) == 6


def test_hf_save_to_disk_keeps_class_label_names(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["positive", "negative"])}
    )  # fmt: skip
    rows = {"sentence": [f"s{i}" for i in range(20)], "label": [i % 2 for i in range(20)]}
    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows, features=features),
        dev=datasets.Dataset.from_dict(rows, features=features).select(range(6)),
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    src = HFSource(path=str(tmp_path / "saved"), validation_split="dev")
    data = load_text_data(DataSpec(hf=src, text_column="sentence"))
    assert data.label_names == ("positive", "negative")  # the ClassLabel order, not sorted
    assert data.train_labels.tolist() == rows["label"]
    assert len(data.val_texts) == 6
    # ClassLabel's -1 means "no label" (e.g. GLUE test splits)
    rows["label"][4] = -1
    datasets.DatasetDict(train=datasets.Dataset.from_dict(rows, features=features)).save_to_disk(
        str(tmp_path / "unlabelled")
    )
    with pytest.raises(DataError, match=r"1 of 20 rows have no label .*row 5"):
        load_text_data(
            DataSpec(hf=HFSource(path=str(tmp_path / "unlabelled")), text_column="sentence")
        )


# --- every bad input: (make the spec in tmp_path) -> message that says what and where ---------


def _case_missing_file(d: Path) -> DataSpec:
    return DataSpec(train=d / "nope.csv")


def _case_missing_validation_file(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(), d / "t.csv"), validation=d / "gone.jsonl")


def _case_directory(d: Path) -> DataSpec:
    (d / "dir.csv").mkdir()
    return DataSpec(train=d / "dir.csv")


def _case_garbage_parquet(d: Path) -> DataSpec:
    (d / "t.parquet").write_bytes(b"this is not parquet")
    return DataSpec(train=d / "t.parquet")


def _case_bad_jsonl(d: Path) -> DataSpec:
    (d / "t.jsonl").write_text('{"text": "a", "label": 1}\n{"text": oops\n')
    return DataSpec(train=d / "t.jsonl")


def _case_zero_byte_csv(d: Path) -> DataSpec:
    (d / "t.csv").write_bytes(b"")
    return DataSpec(train=d / "t.csv")


def _case_suffix(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(), d / "t.txt"))


def _case_text_column(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(), d / "t.csv"), text_column="review")


def _case_label_column(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(), d / "t.parquet"), label_column="sentiment")


def _case_header_only(d: Path) -> DataSpec:
    (d / "t.csv").write_text("text,label\n")
    return DataSpec(train=d / "t.csv")


def _case_empty_validation(d: Path) -> DataSpec:
    (d / "v.jsonl").write_text("")
    return DataSpec(train=_write(_frame(), d / "t.csv"), validation=d / "v.jsonl")


def _case_single_class(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(labels=("pos",)), d / "t.csv"))


def _case_missing_labels(d: Path) -> DataSpec:
    df = _frame(20)
    df.loc[[4, 9], "label"] = None
    return DataSpec(train=_write(df, d / "t.csv"))


def _case_missing_labels_jsonl(d: Path) -> DataSpec:
    df = _frame(20)
    df.loc[[2], "label"] = None
    return DataSpec(train=_write(df, d / "t.jsonl"))


def _case_all_empty(d: Path) -> DataSpec:
    df = _frame(6)
    df["text"] = ["", " ", "\t", "", "", "  "]
    return DataSpec(train=_write(df, d / "t.csv"))


def _case_fractional_labels(d: Path) -> DataSpec:
    df = _frame(6)
    df["label"] = [0.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    return DataSpec(train=_write(df, d / "t.parquet"))


def _case_unknown_validation_label(d: Path) -> DataSpec:
    val = _frame(6)
    val.loc[3, "label"] = "angry"
    return DataSpec(train=_write(_frame(), d / "t.csv"), validation=_write(val, d / "v.csv"))


def _case_too_few_to_split(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(4, labels=("a", "b", "c", "d")), d / "t.csv"))


def _case_limit_below_classes(d: Path) -> DataSpec:
    return DataSpec(train=_write(_frame(60), d / "t.csv"), limit_train=2)


def _case_hf_missing(d: Path) -> DataSpec:
    return DataSpec(hf=HFSource(path=str(d / "no-such-dataset")))


def _case_hf_split(d: Path) -> DataSpec:
    (d / "hf").mkdir()
    _write(_frame(), d / "hf" / "train.csv")
    return DataSpec(hf=HFSource(path=str(d / "hf"), validation_split="validation"))


def _case_hf_column(d: Path) -> DataSpec:
    (d / "hf").mkdir()
    _write(_frame(), d / "hf" / "train.csv")
    return DataSpec(hf=HFSource(path=str(d / "hf")), text_column="sentence")


def _case_text(name: str, content: str) -> Callable[[Path], DataSpec]:
    """A case whose train file is `content` verbatim (UTF-8), named `name`."""

    def make(d: Path) -> DataSpec:
        (d / name).write_text(content, encoding="utf-8")
        return DataSpec(train=d / name)

    make.__name__ = f"_case_{name}"  # the test id
    return make


def _case_bytes(name: str, content: bytes) -> Callable[[Path], DataSpec]:
    """A case whose train file holds exactly these bytes."""

    def make(d: Path) -> DataSpec:
        (d / name).write_bytes(content)
        return DataSpec(train=d / name)

    make.__name__ = f"_case_{name}"
    return make


def _rows(n: int = 6, sep: str = ",") -> str:
    """`n` well-formed data lines (two classes) to surround a bad line with."""
    return "".join(f"row {i}{sep}{'ab'[i % 2]}\n" for i in range(n))


def _case_duplicate_parquet(d: Path) -> DataSpec:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.array([f"t{i}" for i in range(6)])
    labels = pa.array([i % 2 for i in range(6)])
    table = pa.table([texts, labels, labels], names=["text", "label", "label"])
    pq.write_table(table, d / "t.parquet")
    return DataSpec(train=d / "t.parquet")


def _case_missing_labels_parquet_str(d: Path) -> DataSpec:
    df = _frame(6)
    df["label"] = ["a", None, "b", "a", None, "b"]
    return DataSpec(train=_write(df, d / "t.parquet"))


def _case_missing_labels_parquet_int(d: Path) -> DataSpec:
    df = _frame(6)
    df["label"] = pd.array([0, 1, None, 1, 0, 1], dtype="Int64")
    return DataSpec(train=_write(df, d / "t.parquet"))


def _case_latin1_csv(d: Path) -> DataSpec:
    (d / "t.csv").write_bytes(("text,label\n" + _rows(3) + "café,a\n").encode("latin-1"))
    return DataSpec(train=d / "t.csv")


def _case_latin1_label(d: Path) -> DataSpec:
    # pyarrow reads a non-UTF-8 cell of an untyped column as bytes: a class b'\xe9' without a word.
    (d / "t.csv").write_bytes(("text,label\n" + _rows(3) + "x,é\n").encode("latin-1"))
    return DataSpec(train=d / "t.csv")


def _case_latin1_jsonl(d: Path) -> DataSpec:
    lines = ['{"text": "a", "label": 1}', '{"text": "café", "label": 0}']
    (d / "t.jsonl").write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    return DataSpec(train=d / "t.jsonl")


def _case_utf16_csv(d: Path) -> DataSpec:
    (d / "t.csv").write_text("text,label\n" + _rows(), encoding="utf-16")
    return DataSpec(train=d / "t.csv")


def _case_text_parquet(d: Path) -> DataSpec:
    (d / "t.parquet").write_text("text,label\n" + _rows())
    return DataSpec(train=d / "t.parquet")


# The findings of the data-file review: inputs whose message was pandas'/pyarrow's own.
FILE_CASES: list[tuple[Callable[[Path], DataSpec], str]] = [
    # 1. duplicate column names, in every file kind
    (
        _case_text("dup_label.csv", "label,text,label\n" + "a,t0,b\nb,t1,a\n" * 3),
        r"dup_label\.csv: column 'label' appears twice in the header \(columns 1 and 3\); "
        r"rename one",
    ),
    (
        _case_text("dup_text.csv", "text,label,text\n" + "t0,a,x\nt1,b,y\n" * 3),
        r"dup_text\.csv: column 'text' appears twice in the header \(columns 1 and 3\)",
    ),
    (
        _case_text("dup_other.csv", 'text,"note",label,note\n' + "t0,n,a,m\nt1,n,b,m\n" * 3),
        r"dup_other\.csv: column 'note' appears twice in the header \(columns 2 and 4\)",
    ),
    (
        _case_text("dup.tsv", "label\ttext\tlabel\n" + "a\tt0\tb\nb\tt1\ta\n" * 3),
        r"dup\.tsv: column 'label' appears twice in the header \(columns 1 and 3\)",
    ),
    (
        _case_duplicate_parquet,
        r"t\.parquet: column 'label' appears twice in the schema \(columns 2 and 3\); rename one",
    ),
    (
        _case_text(
            "dup_first.jsonl",
            '{"text": "a", "label": 1, "label": 2}\n' + '{"text": "b", "label": 0}\n' * 5,
        ),
        r"dup_first\.jsonl: key 'label' appears twice in the object on line 1; rename one",
    ),
    (
        _case_text(
            "dup_later.jsonl",
            '{"text": "b", "label": 0}\n' * 3 + '{"text": "a", "text": "c", "label": 1}\n',
        ),
        r"dup_later\.jsonl: key 'text' appears twice in the object on line 4",
    ),
    # 2. a missing or empty label, in every file kind: file, column, first row, how many
    (
        _case_text(
            "int.csv", "text,label\n" + _rows(2).replace(",a", ",0").replace(",b", ",1") + "x,\n"
        ),
        r"int\.csv: 1 of 3 rows have no label in column 'label' \(first: row 3 \(line 4\)\); "
        r"give every row a label, or remove the rows without one",
    ),
    (
        _case_text(
            "int.tsv",
            "text\tlabel\nx\t\n" + _rows(4, "\t").replace("\ta", "\t0").replace("\tb", "\t1"),
        ),
        r"int\.tsv: 1 of 5 rows have no label in column 'label' \(first: row 1 \(line 2\)\)",
    ),
    (
        _case_text("str.tsv", "text\tlabel\n" + _rows(4, "\t") + "x\t\n"),
        r"str\.tsv: 1 of 5 rows have no label in column 'label' \(first: row 5 \(line 6\)\)",
    ),
    (
        _case_text("null.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n' * 2),
        r"null\.jsonl: 2 of 4 rows have no label in column 'label' \(first: line 2\)",
    ),
    (
        _case_text(
            "nokey.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b"}\n{"text": "c", "label": "y"}\n',
        ),
        r"nokey\.jsonl: 1 of 3 rows have no label in column 'label' \(first: line 2\)",
    ),
    (
        _case_text(
            "blank.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
            '{"text": "c", "label": " "}\n',
        ),
        r"blank\.jsonl: 1 of 3 rows have no label in column 'label' \(first: line 3\)",
    ),
    (
        _case_missing_labels_parquet_str,
        r"t\.parquet: 2 of 6 rows have no label in column 'label' \(first: row 2\)",
    ),
    (
        _case_missing_labels_parquet_int,
        r"t\.parquet: 1 of 6 rows have no label in column 'label' \(first: row 3\)",
    ),
    # the row's line counts the lines a quoted text spans and the blank lines
    (
        _case_text("multiline.csv", 'text,label\n"two\nlines",a\n\nb,b\nc,\n'),
        r"multiline\.csv: 1 of 3 rows have no label .*\(first: row 3 \(line 6\)\)",
    ),
    (
        _case_text(
            "gaps.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n{"text": "c"}\n'
        ),
        r"gaps\.jsonl: 1 of 3 rows have no label .*\(first: line 4\)",
    ),
    # 3. a malformed JSON lines file: the line and what is wrong with it
    (
        _case_text(
            "bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": oops}\n'
        ),
        r"bad\.jsonl: line 3 is not valid JSON \(Expecting value at column 10\); "
        r"each line must hold one JSON object",
    ),
    (
        _case_text("arrays.jsonl", '["a", 1]\n["b", 0]\n'),
        r"arrays\.jsonl: line 1 holds a JSON array, not an object; each line must hold one "
        r"JSON object",
    ),
    (
        _case_text("pretty.jsonl", "[\n" + '  {"text": "a", "label": 1},\n' * 3 + "]\n"),
        r"pretty\.jsonl: line 1 is not valid JSON .*one JSON object .*one object per line",
    ),
    (
        _case_text("nested.jsonl", '{"text": "a", "label": [1]}\n{"text": "b", "label": [0]}\n'),
        r"nested\.jsonl: the label at line 1 in column 'label' is a list, not one value; "
        r"labels must be strings or integers",
    ),
    # 4. the wrong separator for the suffix; a CSV parse error names the line
    (
        _case_text("tabs.csv", "text\tlabel\n" + "a, b, and c\tx\nd\ty\n" * 3),
        r"tabs\.csv: the header has tabs and no commas, so the file looks tab-separated; "
        r"rename it tabs\.tsv",
    ),
    (
        _case_text("commas.tsv", "text,label\n" + _rows()),
        r"commas\.tsv: the header has commas and no tabs, so the file looks comma-separated; "
        r"rename it commas\.csv",
    ),
    (
        _case_text("ragged.csv", "text,label\n" + _rows(2) + "a, b,c\n" + _rows(2)),
        r"ragged\.csv: line 4 has 3 fields but the header has 2 \(text, label\); "
        r"quote a text that holds a comma",
    ),
    (
        _case_text("semicolons.csv", "text;label\n" + _rows(sep=";")),
        r"semicolons\.csv: the header has semicolons and no commas, so the file looks "
        r"semicolon-separated; save it with commas between the values",
    ),
    (
        _case_text("tab_rows.csv", "text,label\n" + _rows(2) + "tab\tseparated\n"),
        r"tab_rows\.csv: line 4 has 1 field but the header has 2 \(text, label\); "
        r"separate its values with commas, not tabs",
    ),
    (
        _case_text("spans.csv", 'text,label\n"two\nlines",a,extra\n' + _rows()),
        r"spans\.csv: the row on lines 2-3 has 3 fields but the header has 2",
    ),
    (
        _case_text("spaced.csv", "text, label\n" + _rows()),
        r"spaced\.csv: no label column 'label'; columns are: text,  label; ' label' has spaces "
        r"around the name: remove them",
    ),
    (
        _case_text("short.tsv", "text\tlabel\n" + _rows(3, "\t") + "lonely\n"),
        r"short\.tsv: line 5 has 1 field but the header has 2 \(text, label\); "
        r"give each row a value for every column",
    ),
    (
        _case_text("unclosed.csv", 'text,label\na,b\n"never closed,a\n' + _rows(3)),
        r"unclosed\.csv: the quote that opens line 3 is never closed",
    ),
    # 5. only a header, with or without a line break
    (
        _case_text("header.csv", "text,label"),
        r"header\.csv: no rows \(empty split\): the file holds only the header line "
        r"'text,label'; add one row per example under it",
    ),
    (
        _case_text("header.tsv", "text\tlabel\n"),
        r"header\.tsv: no rows \(empty split\): the file holds only the header line",
    ),
    (
        _case_text("blank_lines.csv", "\n\n  \n"),
        r"blank_lines\.csv: the file is empty; a CSV file needs a header line naming the "
        r"columns \(text,label\) and one row per example",
    ),
    # 6. other files that are not what their suffix says
    (
        _case_bytes("zero.tsv", b""),
        r"zero\.tsv: the file is empty; a TSV file needs a header line",
    ),
    (
        _case_bytes("binary.csv", bytes(range(256)) * 4),
        r"binary\.csv: the file holds NUL bytes \(line 1\), so it is binary or UTF-16/32 text, "
        r"not a UTF-8 CSV file",
    ),
    (
        _case_utf16_csv,
        r"t\.csv: the file is UTF-16 text \(it starts with a UTF-16 byte order mark\); "
        r"save it as UTF-8",
    ),
    (
        _case_latin1_csv,
        r"t\.csv: line 5 is not valid UTF-8 \(byte 0xe9\); the file is in another encoding "
        r"\(latin-1 or Windows-1252\?\): save it as UTF-8",
    ),
    (_case_latin1_label, r"t\.csv: line 5 is not valid UTF-8 \(byte 0xe9\)"),
    (_case_latin1_jsonl, r"t\.jsonl: line 2 is not valid UTF-8 \(byte 0xe9\)"),
    (
        _case_bytes("parquet.csv", b"PAR1" + bytes(100) + b"PAR1"),
        r"parquet\.csv: the file is Parquet, not CSV; rename it parquet\.parquet",
    ),
    (
        _case_text_parquet,
        r"t\.parquet: the file is not Parquet \(it holds text\); give it the suffix of its "
        r"format \(\.csv, \.tsv or \.jsonl\)",
    ),
    (
        _case_bytes("junk.parquet", b"\x01\x02\x03 not parquet \xff"),
        r"junk\.parquet: the file is not Parquet \(it does not end with the marker PAR1\); "
        r"write it with pandas' to_parquet",
    ),
    (_case_bytes("zero.parquet", b""), r"zero\.parquet: the file is empty \(0 bytes\)"),
]


BAD_INPUTS: list[tuple[Callable[[Path], DataSpec], str]] = [
    (_case_missing_file, r"data file not found: .*nope\.csv"),
    (_case_missing_validation_file, r"data file not found: .*gone\.jsonl"),
    (_case_directory, r"is a directory, not a file: .*dir\.csv"),
    (_case_garbage_parquet, r"t\.parquet: the file is not Parquet \(it holds text\)"),
    (_case_bad_jsonl, r"t\.jsonl: line 2 is not valid JSON"),
    (_case_zero_byte_csv, r"t\.csv: the file is empty; a CSV file needs a header line"),
    (_case_suffix, r"t\.txt: unsupported file type '\.txt'; use one of \.csv"),
    (_case_text_column, r"t\.csv: no text column 'review'; columns are: text, label"),
    (_case_label_column, r"t\.parquet: no label column 'sentiment'; columns are: text, label"),
    (_case_header_only, r"t\.csv: no rows \(empty split\)"),
    (_case_empty_validation, r"v\.jsonl: the file is empty; a JSON lines file needs one object"),
    (_case_single_class, r"t\.csv: only one class \('pos'\) in column 'label'"),
    (
        _case_missing_labels,
        r"t\.csv: 2 of 20 rows have no label in column 'label' "
        r"\(first: row 5 \(line 6\)\)",
    ),
    (_case_missing_labels_jsonl, r"t\.jsonl: 1 of 20 rows have no label .*\(first: line 3\)"),
    (_case_all_empty, r"t\.csv: all 6 texts in column 'text' are empty"),
    (_case_fractional_labels, r"t\.parquet: label 0\.5 at row 3 is not a whole number"),
    (_case_unknown_validation_label, r"v\.csv: label 'angry' at row 4 \(line 5\) does not occur"),
    (_case_too_few_to_split, r"cannot split 4 rows of .*t\.csv .*rows per label: 'a': 1"),
    (_case_limit_below_classes, r"cannot subsample 2 of 48 train rows \(limit_train\)"),
    (_case_hf_missing, r"cannot load hf .*no-such-dataset split 'train': "),
    (_case_hf_split, r"cannot load hf .*split 'validation': .*validation"),
    (_case_hf_column, r"hf .*split 'train': no text column 'sentence'; columns are: text, label"),
    *FILE_CASES,
]


@pytest.mark.parametrize(
    ("make", "message"), BAD_INPUTS, ids=[make.__name__[6:] for make, _ in BAD_INPUTS]
)
def test_bad_input_raises_data_error_saying_what_and_where(
    tmp_path: Path, make: Callable[[Path], DataSpec], message: str
) -> None:
    spec = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=message) as info:
        load_text_data(spec)
    assert "\n" not in str(info.value)  # one line for the CLI
    # nothing written next to the data (the HF cache is redirected elsewhere and may appear)
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-datasets-cache")
    assert after == before


@pytest.mark.parametrize(
    "fields",
    [
        {"demo": True, "max_length": 4},
        {"demo": True, "train": "t.csv"},
        {},
        {"demo": True, "validation_fraction": 1.5},
        {"demo": True, "demo_size": 25},
        {"demo": True, "text_column": "x", "label_column": "x"},
    ],
)
def test_the_schema_refuses_what_the_data_layer_cannot_read(fields: dict) -> None:
    # One schema: the data layer reads a validated DataConfig and repeats none of its checks
    # (load_study reports these with the study file's line and column).
    with pytest.raises(ValidationError):
        DataSpec(**fields)
