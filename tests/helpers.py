from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.ofa"))


def ofasys_corpus() -> list[tuple[str, str]]:
    """(name, instruction) of every instruction in OFASys' README and docs task list."""
    out = []
    for line in (ROOT / "tests" / "data" / "ofasys_instructions.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, instr = line.split("\t", 1)
            out.append((name, instr))
    return out
