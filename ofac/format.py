"""The formatter: AST -> canonical text, with parse(format(ast)) == ast."""
from __future__ import annotations

import re

from . import syntax as ast

_BARE_VALUE = re.compile(r'[^,\[\]\s"]+')
_BARE_SETTING = re.compile(r'[^\s#{}\[\],="]+')


def format_instruction(instr: ast.Instruction) -> str:
    return " ||| ".join(format_template(t) for t in instr.templates)


def format_template(t: ast.Template) -> str:
    return " -> ".join(_items(side) for side in t.sides).strip()


def _items(items) -> str:
    return " ".join(_item(i) for i in items)


def _item(item) -> str:
    if isinstance(item, ast.Text):
        return item.text
    if isinstance(item, ast.Marker):
        return f"<{item.kind}>"
    if isinstance(item, ast.Repeat):
        return f"({_items(item.items)})*"
    return format_slot(item)


def format_slot(slot: ast.Slot) -> str:
    head = slot.modality + (f":{slot.column}" if slot.column is not None else "")
    attrs = "".join("," + _attr(a) for a in slot.attrs)
    return f"[{head}{attrs}]"


def _attr(a: ast.Attr) -> str:
    if a.value is None:
        return a.key
    value = a.value if _BARE_VALUE.fullmatch(a.value) else f'"{a.value}"'
    return f"{a.key}={value}"


def format_file(tf: ast.TaskFile) -> str:
    return "\n\n".join(_block(b, 0) for b in tf.blocks) + "\n"


def _block(b: ast.Block, depth: int) -> str:
    pad = "    " * depth
    head = f"{pad}{b.kind}" + (f" {b.label}" if b.label else "") + " {"
    lines = [head]
    for e in b.entries:
        if isinstance(e, ast.Block):
            lines.append(_block(e, depth + 1))
        elif isinstance(e, ast.InstructionLine):
            text = format_instruction(e.instruction) if e.instruction else e.raw
            lines.append(f"{pad}    instruction: {text}")
        else:
            lines.append(f"{pad}    {e.key} = {format_value(e.value)}")
    lines.append(pad + "}")
    return "\n".join(lines)


def format_value(v: ast.Value) -> str:
    if isinstance(v, ast.ListValue):
        return "[" + ", ".join(format_value(i) for i in v.items) + "]"
    if v.quoted or not _BARE_SETTING.fullmatch(v.text):
        return '"' + v.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return v.text
