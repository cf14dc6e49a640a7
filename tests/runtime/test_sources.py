"""Data sources: every format, lazy offset index, sharding, and row-level diagnostics."""
from __future__ import annotations

import base64
import json

import pytest
import torch
from media import write_image

from ofac.runtime.data import MemorySource, open_source, shard
from ofac.runtime.errors import DataError
from ofac.runtime.preprocess.media import load_image

ROWS = [{"img": "a.png", "cap": "a red box"}, {"img": "b.png", "cap": "two dots, \"quoted\""}]


def test_jsonl_csv_tsv_read_the_same_rows(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "d.csv").write_text('img,cap\na.png,a red box\nb.png,"two dots, ""quoted"""\n')
    (tmp_path / "d.tsv").write_text('img\tcap\na.png\ta red box\nb.png\ttwo dots, "quoted"\n')
    for name in ("d.jsonl", "d.csv", "d.tsv"):
        src = open_source(tmp_path / name)
        assert len(src) == 2 and [src[i] for i in range(2)] == ROWS, name
        assert src.base_dir == tmp_path


def test_headerless_tsv_with_base64_image(tmp_path):
    write_image(tmp_path / "x.png", size=(20, 10))
    b64 = base64.b64encode((tmp_path / "x.png").read_bytes()).decode()
    (tmp_path / "ofasys.tsv").write_text(f"7\t{b64}\ta caption\n")
    src = open_source(tmp_path / "ofasys.tsv", columns=["uid", "img", "cap"])
    row = src[0]
    assert row["uid"] == "7" and load_image(row["img"], src.base_dir).size == (20, 10)


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS * 3), tmp_path / "d.parquet", row_group_size=2)
    src = open_source(tmp_path / "d.parquet")
    assert len(src) == 6 and src[5] == ROWS[1] and src[2] == ROWS[0]


def test_memory_sources():
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return ROWS[i]

    assert open_source(ROWS)[1] == ROWS[1]
    assert open_source(DS())[0] == ROWS[0]
    with pytest.raises(DataError, match="expected a dict"):
        MemorySource([1, 2])[0]


def test_huggingface_dataset():
    datasets = pytest.importorskip("datasets")
    src = open_source(datasets.Dataset.from_list(ROWS))
    assert src[1] == ROWS[1]


def test_file_index_is_lazy_and_rows_are_numbered_by_line(tmp_path):
    lines = ["{\"a\": 1}", "", "{\"a\": 2}", "not json", "[1]"]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    src = open_source(tmp_path / "d.jsonl")
    assert len(src) == 4 and src.row_number(1) == 3  # the blank line is skipped, numbering is by line
    assert src[1] == {"a": 2}
    with pytest.raises(DataError) as err:
        src[2]
    assert err.value.row == 4 and "d.jsonl" in str(err.value) and "not valid JSON" in str(err.value)
    with pytest.raises(DataError, match="expected a JSON object"):
        src[3]


def test_csv_row_with_wrong_cell_count(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError) as err:
        open_source(tmp_path / "d.csv")[1]
    assert err.value.row == 3 and "1 cells but 2 columns" in str(err.value)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_source(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unknown data format"):
        open_source(tmp_path / "data.xml")


def test_shards_partition_the_rows():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3):
            parts = [list(shard(n, r, world)) for r in range(world)]
            assert sorted(sum(parts, [])) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
