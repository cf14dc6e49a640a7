"""Bad rows are found before the first update, all at once (runtime/data/scan.py), and a run
with `on_error = skip` trains past every kind of them, broken JSON lines included."""
from __future__ import annotations

import json

import numpy as np
import pytest
from media import write_image

from ofac import compile_source
from ofac.runtime.data.scan import MAX_SHOWN, BadRows, scan
from ofac.runtime.preprocess.media import MediaError, check_cell
from ofac.runtime.train.recipe import TrainingRun

SOURCE = """
task grounding {{
    instruction: [IMAGE:img] which region does the text " [TEXT:phrase] " describe? -> [BOX:box]
    train = rows.jsonl
    micro_batch_size = 4
    {on_error}
}}
model {{ d_model = 32  ffn_dim = 64  encoder_layers = 1  decoder_layers = 1  heads = 2  image_size = 32
         patch_size = 8  vocab_size = 300  box_bins = 16 }}
train {{ steps = 3  eval_every = 1000  save_every = 1  out = run }}
"""


def _files(tmp_path, bad: bool = True, on_error: str = ""):
    (tmp_path / "img").mkdir()
    for i in range(4):
        write_image(tmp_path / "img" / f"{i}.png", size=(32, 32), color=(200, 0, 0), box=(4, 4, 20, 20))
    good = [json.dumps({"img": f"img/{i % 4}.png", "phrase": "the red square", "box": "4,4,20,20"}) for i in range(12)]
    lines = list(good)
    if bad:
        lines[2] = json.dumps({"img": "img/0.png", "box": "4,4,20,20"})  # line 3: no phrase
        lines[4] = '{"img": "img/1.png", "phrase": "the red square", "box": '  # line 5: cut short
        lines[5] = json.dumps({"img": "img/1.png", "phrase": {"text": "x"}, "box": "4,4,20,20"})  # line 6: a dict
        lines[7] = json.dumps({"img": "img/nope.png", "phrase": "the red square", "box": "4,4,20,20"})  # line 8
        lines[8] = json.dumps({"img": "img/2.png", "phrase": "the red square", "box": "4,4,20"})  # line 9
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    source = SOURCE.format(on_error=on_error)
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    return compiled


def test_every_bad_row_is_reported_before_the_run_directory_is_written(tmp_path):
    compiled = _files(tmp_path)
    with pytest.raises(BadRows) as err:
        TrainingRun(compiled, tmp_path).fit()
    faults = {(f.row, f.column): f.message for f in err.value.faults}
    assert faults.keys() == {(3, "phrase"), (5, None), (6, "phrase"), (8, "img"), (9, "box")}, faults
    assert faults[(3, "phrase")] == "missing column `phrase`"
    assert faults[(5, None)].startswith("not valid JSON")
    assert "found dict" in faults[(6, "phrase")] and "image file not found" in faults[(8, "img")]
    assert "four numbers" in faults[(9, "box")]
    assert all(f.file.endswith("rows.jsonl") for f in err.value.faults)
    assert str(err.value).startswith("5 bad cells in 12 rows read before training:")
    assert [d.line for d in err.value.diagnostics] == [3, 5, 6, 8, 9]
    assert not (tmp_path / "run").exists()  # nothing written: the user fixes the file and runs again


def test_a_clean_file_scans_without_faults(tmp_path):
    assert scan(_files(tmp_path, bad=False)) == 12


def test_many_faults_are_capped_in_the_report(tmp_path):
    compiled = _files(tmp_path, bad=False)
    rows = [json.dumps({"img": "img/0.png", "box": "1,1,2,2"})] * (MAX_SHOWN + 5)
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(BadRows) as err:
        scan(compiled)
    assert len(err.value.faults) == MAX_SHOWN + 5 and len(err.value.diagnostics) == MAX_SHOWN + 1
    assert "... and 5 more" in str(err.value)


def test_on_error_skip_trains_past_every_bad_row_and_says_so_first(tmp_path):
    compiled = _files(tmp_path, on_error="on_error = skip")
    said = []
    result = TrainingRun(compiled, tmp_path, log=said.append).fit()
    assert result.step == 3
    assert any("5 bad rows will be skipped (on_error = skip)" in s for s in said), said
    assert (tmp_path / "run" / "checkpoints").exists()


def test_media_cells_are_checked_without_decoding(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not really a png")  # exists: decoding is not the scan's job
    check_cell("a.png", tmp_path, "image")
    check_cell({"path": "a.png"}, tmp_path, "image")
    check_cell(b"\x89PNG", tmp_path, "image")
    check_cell(np.zeros((4, 4, 3), np.uint8), tmp_path, "image")
    check_cell("iVBORw0KGgo" * 8, tmp_path, "image")  # base64 text
    for bad, why in (("b.png", "image file not found"), (3, "found int"), ("https://x.org/a.png", "not fetched"),
                     ({"name": "a.png"}, "needs `path`")):
        with pytest.raises(MediaError, match=why):
            check_cell(bad, tmp_path, "image")


def test_a_validation_row_without_its_references_is_found_before_training(tmp_path):
    """`references = answers`: valid rows must hold it (training rows need not)."""
    rows = [{"q": f"what is {i}?", "a": str(i), "answers": [str(i)] * 3} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"q": r["q"], "a": r["a"]}) + "\n" for r in rows))
    rows[3].pop("answers")
    (tmp_path / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = ('task qa {\n  instruction: [TEXT:q] -> [TEXT:a]\n  train = train.jsonl\n  valid = valid.jsonl\n'
              '  metric = vqa_score\n  references = answers\n}\n')
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    with pytest.raises(BadRows) as err:
        scan(compiled)
    ((fault,),) = [err.value.faults]
    assert (fault.row, fault.column, fault.file.endswith("valid.jsonl")) == (4, "answers", True)
