from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ofa"))
# the example files whose data a script of examples/ writes: the script and its arguments
MAKE_DATA = {"demo.ofa": ["make_data.py"], "multitask.ofa": ["make_data.py", "--zoo"],
             "quick.ofa": ["make_data.py", "--zoo"], "images.ofa": ["make_images.py"],
             "speech.ofa": ["make_speech.py"], "motion.ofa": ["make_motion.py"],
             "catalogue.ofa": ["make_catalogue.py"], "caption.ofa": ["make_data.py"],
             "caption_scst.ofa": ["make_data.py"]}


def ofasys_corpus() -> list[tuple[str, str]]:
    """(name, instruction) of every instruction in OFASys' README and docs task list."""
    out = []
    for line in (ROOT / "tests" / "data" / "ofasys_instructions.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, instr = line.split("\t", 1)
            out.append((name, instr))
    return out
