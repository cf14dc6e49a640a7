"""One checkpoint answers its tasks and new instructions: the Python API, `ofac infer`,
`ofac eval` (which must reproduce the trainer's validation), diagnostics, and save_box."""
from __future__ import annotations

import json

import pytest
from media import write_image
from PIL import Image
from test_trainer import make_task_file

import ofac
from ofac.runtime.errors import DataError
from ofac.runtime.serve.answer import InferenceError, OFASys, Output
from ofac.runtime.serve.evaluation import evaluate_run
from ofac.runtime.train.recipe import TrainingRun


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    compiled = make_task_file(root, steps=60)
    TrainingRun(compiled, root).fit()
    return root


def valid_rows(root, name):
    return [json.loads(line) for line in (root / f"{name}_valid.jsonl").read_text().splitlines()]


def test_the_checkpoint_answers_its_tasks_on_unseen_rows(run):
    system = ofac.load(run / "run")  # a run directory loads the model
    assert isinstance(system, OFASys) and set(system.tasks) == {"caption", "middle"}
    rows = valid_rows(run, "cap")
    outs = system.inference("caption", [{"img": r["img"]} for r in rows], base_dir=run)
    assert [o.text for o in outs] == [r["cap"] for r in rows]  # colour captions of unseen images
    one = system.inference("caption", {"img": rows[0]["img"]}, base_dir=run, beam_size=3)
    assert one.text == rows[0]["cap"] and len(one.n_best) == 3 and one.scores == sorted(one.scores, reverse=True)
    assert one.score == one.scores[0]


def test_a_new_instruction_compiles_against_the_checkpoint(run):
    system = OFASys.from_pretrained(run / "run")
    rows = valid_rows(run, "cap")
    same = system.inference("[IMAGE:img] what does the image describe? -> [TEXT:cap]", {"img": rows[1]["img"]},
                            base_dir=run)
    assert same.text == rows[1]["cap"]
    closed = system.inference("caption", {"img": rows[1]["img"]}, base_dir=run, closed_set=["a cat", "a dog"])
    assert closed.text in ("a cat", "a dog")  # a closed set given at inference holds
    with pytest.raises(InferenceError) as err:  # no audio adaptor in this model
        system.inference("[AUDIO:wav] what is said? -> [TEXT:t]", {"wav": "x.wav"})
    assert err.value.diagnostic.code == "E0118" and "audio_fbank" in err.value.diagnostic.message
    with pytest.raises(InferenceError) as err:  # not an instruction at all
        system.inference("[IMAGE:img -> [TEXT:cap]", {"img": rows[1]["img"]})
    assert err.value.diagnostics[0].code.startswith("E00")
    with pytest.raises(DataError, match="missing column `img`"):
        system.inference("caption", {"image": rows[1]["img"]}, base_dir=run)


def test_eval_reproduces_the_trainers_validation(run):
    validation = json.loads((run / "run" / "checkpoints" / "best" / "validation.json").read_text())["valid"]
    results = evaluate_run(run / "run", run / "t.ofa")
    for task in ("caption", "middle"):
        assert results[task] == pytest.approx(validation[task], abs=1e-9), task
    lines = (run / "run" / "eval" / "valid" / "caption.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 8 and first["prediction"] == first["reference"]


def test_cli_infer_and_eval(run):
    from typer.testing import CliRunner

    from ofac.cli import app

    rows = valid_rows(run, "cap")
    cli = CliRunner()
    result = cli.invoke(app, ["infer", str(run / "run"), "--task", "caption", "--data",
                              f"img={run / rows[2]['img']}"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == rows[2]["cap"]
    (run / "rows.jsonl").write_text("\n".join(json.dumps({"img": r["img"]}) for r in rows) + "\n")
    result = cli.invoke(app, ["infer", str(run / "run"), "-t", "caption", "--input", str(run / "rows.jsonl"),
                              "--format", "json", "--beam", "2"])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["text"] for a in answers] == [r["cap"] for r in rows] and len(answers[0]["n_best"]) == 2
    result = cli.invoke(app, ["infer", str(run / "run"), "-i", "[AUDIO:a] what? -> [TEXT:t]", "-d", "a=x.wav"])
    assert result.exit_code == 1 and "E0118" in result.stderr
    result = cli.invoke(app, ["infer", str(run / "nope"), "-t", "caption", "-d", "img=x.png"])
    assert result.exit_code == 1 and "not a run directory" in result.stderr
    result = cli.invoke(app, ["eval", str(run / "run"), "--format", "json"])  # the run's own task file
    assert result.exit_code == 0, result.output
    printed, direct = json.loads(result.stdout), evaluate_run(run / "run")
    assert printed.keys() == direct.keys()
    for task in direct:
        assert printed[task] == pytest.approx(direct[task])
    result = cli.invoke(app, ["eval", str(run / "run"), "--show", "1"])  # the table, then one prediction a task
    assert result.exit_code == 0, result.output
    shown = [line for line in result.stdout.splitlines() if " row " in line]
    first = json.loads((run / "run" / "eval" / "valid" / "caption.jsonl").read_text().splitlines()[0])
    assert len(shown) == len(direct) and shown[0].startswith(f"caption row {first['row']}: {first['prediction']} ")


def test_boxes_come_back_in_original_pixels_and_are_drawn(tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(8):
        write_image(tmp_path / "img" / f"{i}.png", size=(64, 48), color=(20, 20, 20), box=(8, 8, 40, 30))
        rows.append({"img": f"img/{i}.png", "region": "8,8,40,30", "text": "the square"})
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "t.ofa").write_text("""
task ground {
    instruction: [IMAGE:img] which region does the text " [TEXT:text] " describe? -> [BOX:region]
    train = g.jsonl
    micro_batch_size = 4
}
model { d_model = 32  ffn_dim = 64  encoder_layers = 1  decoder_layers = 1  heads = 2  image_size = 32
        patch_size = 8  vocab_size = 300  box_bins = 64 }
train { steps = 3  out = run }
""")
    TrainingRun(ofac.load(tmp_path / "t.ofa"), tmp_path).fit()
    out = OFASys.from_pretrained(tmp_path / "run").inference("ground", {"img": "img/0.png", "text": "the square"},
                                                             base_dir=tmp_path)
    assert len(out.boxes) == 1 and len(out.boxes[0]) == 4
    x0, y0, x1, y1 = out.boxes[0]
    assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 48  # pixels of the 64x48 original, not of 32x32
    drawn = Output(boxes=[[10, 10, 30, 20]], labels=["thing"], source="img/0.png", base_dir=tmp_path)
    drawn.save_box(tmp_path / "boxed.png")
    image = Image.open(tmp_path / "boxed.png").convert("RGB")
    assert image.size == (64, 48) and image.getpixel((10, 15)) == (255, 0, 0)  # the box's left edge
    with pytest.raises(ValueError, match="no input image"):
        Output(text="x").save_box(tmp_path / "none.png")
