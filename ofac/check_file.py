"""Checking a `.ofa` task file: blocks and settings against ofac.settings, instructions
with ofac.check, and the data columns each task reads against its data files."""
from __future__ import annotations

from pathlib import Path

from . import syntax as ast
from .check import check_instruction
from .datafile import DataFileError, columns_of, ofasys_paths, split_paths
from .diagnostics import Diagnostics, Note
from .names import closest
from .settings import (
    BLOCKS,
    TOP_LEVEL,
    BlockSchema,
    Setting,
    model_sizes,
    size_conflicts,
    tokenizer_conflicts,
    uses_resnet_stem,
)
from .typed import CheckedFile, CheckedTask

_BAD = object()
_TRUE, _FALSE = {"true", "yes", "on"}, {"false", "no", "off"}


def check_file(tf: ast.TaskFile, diags: Diagnostics, base_dir: Path | None = None,
               check_data: bool = True) -> CheckedFile | None:
    tasks: list[CheckedTask] = []
    singles: dict[str, tuple] = {}
    seen_tasks: dict[str, ast.Block] = {}
    seen_blocks: dict[str, ast.Block] = {}
    header_cache: dict = {}
    for block in tf.blocks:
        schema = _schema(block, TOP_LEVEL, diags)
        if schema is None:
            continue
        if schema.labelled and block.label is not None:
            if block.label in seen_tasks:
                diags.duplicate("E0032", f"task `{block.label}` is declared twice", block.label_span,
                                seen_tasks[block.label].label_span, "first declared here",
                                help="task names must be unique: rename one of them")
                continue
            seen_tasks[block.label] = block
        elif not schema.repeatable:
            if block.kind in seen_blocks:
                diags.duplicate("E0033", f"a second `{block.kind}` block", block.kind_span,
                                seen_blocks[block.kind].kind_span, "the first one is here",
                                help=f"merge the settings into one `{block.kind}` block")
                continue
            seen_blocks[block.kind] = block
        values, children = _settings(block, schema, diags)
        if block.kind == "task":
            task = _task(block, values, children, diags)
            if task is not None:
                if check_data and base_dir is not None:
                    _check_columns(task, block, base_dir, diags, header_cache)
                tasks.append(task)
        else:
            singles[block.kind] = values
    if "model" in singles:
        _check_model(seen_blocks["model"], dict(singles["model"]), tasks, diags)
    if "image_tokenizer" in singles:
        _check_tokenizer(seen_blocks["image_tokenizer"], dict(singles["image_tokenizer"]), diags)
    if diags.has_errors:
        return None
    blocks = ("model", "train", "export", "image_tokenizer")
    return CheckedFile(tuple(tasks), **{k: singles.get(k, _defaults(BLOCKS[k])) for k in blocks})


def _check_model(block: ast.Block, values: dict, tasks: list[CheckedTask], diags: Diagnostics) -> None:
    """Model settings that are each in range but do not fit together."""
    sizes = model_sizes(values)
    spans = {e.key: e.span for e in block.entries if isinstance(e, ast.Pair)}
    stem_user = next((t for t in tasks for tpl in t.templates for s in tpl.slots()
                      if uses_resnet_stem(s.adaptor, sizes.get("video_stem"))), None)
    for c in size_conflicts(sizes["d_model"], sizes["heads"], sizes["image_size"], sizes["patch_size"],
                            stem_user is not None):
        span = next((spans[k] for k in c.at if k in spans), block.kind_span)  # else the block itself
        notes = (Note(f"task `{stem_user.name}` uses it", stem_user.span),) if c.adaptor else ()
        diags.error("E0045", c.message, span, label=c.label, notes=notes, help=c.help)


def _check_tokenizer(block: ast.Block, values: dict, diags: Diagnostics) -> None:
    spans = {e.key: e.span for e in block.entries if isinstance(e, ast.Pair)}
    for c in tokenizer_conflicts(values["image_size"], values["grid"]):
        span = next((spans[k] for k in c.at if k in spans), block.kind_span)
        diags.error("E0045", c.message, span, label=c.label, help=c.help)


def _schema(block: ast.Block, allowed, diags: Diagnostics) -> BlockSchema | None:
    schema = BLOCKS.get(block.kind) if block.kind in allowed else None
    if schema is None:
        guess = closest(block.kind, allowed)
        if guess:
            help_ = f"did you mean `{guess}`?"
        else:
            help_ = "blocks here are: " + ", ".join(allowed) if allowed else "no block can be nested here"
        diags.error("E0030", f"unknown block `{block.kind}`", block.kind_span, label="not a block", help=help_)
        return None
    if schema.labelled and block.label is None:
        diags.error("E0031", f"a `{block.kind}` block needs a name", block.kind_span, label="unnamed",
                    help=f"write `{block.kind} my_name {{ ... }}`")
        return None
    if not schema.labelled and block.label is not None:
        diags.error("E0031", f"a `{block.kind}` block takes no name", block.label_span, label="remove this name",
                    help=f"write `{block.kind} {{ ... }}`")
        return None
    return schema


def _defaults(schema: BlockSchema) -> tuple:
    return tuple((s.name, s.default) for s in schema.settings if s.default is not None)


def _settings(block: ast.Block, schema: BlockSchema, diags: Diagnostics):
    given: dict[str, object] = {}
    first: dict[str, ast.Pair] = {}
    children: dict[str, tuple] = {}
    for entry in block.entries:
        if isinstance(entry, ast.Block):
            sub = _schema(entry, schema.children, diags)
            if sub is not None:
                children[entry.kind] = tuple(_settings(entry, sub, diags)[0])
            continue
        if isinstance(entry, ast.InstructionLine):
            if block.kind != "task":
                diags.error("E0034", f"`instruction:` belongs in a task block, not in `{block.kind}`", entry.span,
                            label="misplaced", help="move it into a `task NAME { ... }` block")
            continue
        setting = schema.setting(entry.key)
        if setting is None:
            _unknown_key(entry, schema, diags)
            continue
        if entry.key in first:
            diags.duplicate("E0037", f"`{entry.key}` is set twice", entry.key_span, first[entry.key].key_span,
                            "first set here")
            continue
        first[entry.key] = entry
        value = typed_value(entry.value, setting, diags)
        if value is not _BAD:
            given[entry.key] = value
    values = tuple((s.name, given.get(s.name, s.default)) for s in schema.settings
                   if s.name in given or s.default is not None)
    return values, children


def _unknown_key(pair: ast.Pair, schema: BlockSchema, diags: Diagnostics) -> None:
    names = [s.name for s in schema.settings]
    guess = closest(pair.key, names)
    if pair.key == "instruction":
        help_ = "write `instruction: ...` (with a colon): the rest of the line is the instruction"
    elif guess:
        help_ = f"did you mean `{guess}`?"
    else:
        help_ = f"`{schema.kind}` settings: " + ", ".join(names)
    diags.error("E0034", f"unknown setting `{pair.key}` in `{schema.kind}`", pair.key_span,
                label="unknown setting", help=help_)


def typed_value(value: ast.Value, s: Setting, diags: Diagnostics):
    if s.kind == "floats":
        items = value.items if isinstance(value, ast.ListValue) else (value,)
        numbers = [typed_value(item, Setting(s.name, "float", s.doc, lo=s.lo, hi=s.hi), diags) for item in items]
        return _BAD if any(n is _BAD for n in numbers) else tuple(numbers)
    if s.kind in ("paths", "names", "strings"):
        items = value.items if isinstance(value, ast.ListValue) else (value,)
        out = []
        for item in items:
            if isinstance(item, ast.ListValue):
                return _type_error(item, s, "a list inside a list", diags)
            out.append(item.text)
        return tuple(out)
    if isinstance(value, ast.ListValue):
        return _type_error(value, s, "a list", diags)
    text = value.text
    if s.kind in ("str", "path"):
        return text
    if s.kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        return _type_error(value, s, f"`{text}`", diags)
    if s.kind == "choice":
        if text in s.choices:
            return text
        guess = closest(text, s.choices)
        diags.error("E0035", f"`{s.name}` cannot be `{text}`", value.span, label="not a choice",
                    help=(f"did you mean `{guess}`? " if guess else "") + "choose one of: " + ", ".join(s.choices))
        return _BAD
    try:
        number = int(text) if s.kind == "int" else float(text)
    except ValueError:
        return _type_error(value, s, f"`{text}`", diags)
    if (s.lo is not None and number < s.lo) or (s.hi is not None and number > s.hi):
        lo = s.lo if s.lo is not None else "-inf"
        hi = s.hi if s.hi is not None else "inf"
        diags.error("E0036", f"`{s.name} = {text}` is out of range", value.span, label=f"must be in [{lo}, {hi}]",
                    help=f"`{s.name}`: {s.doc}")
        return _BAD
    return number


_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
              "path": "a path", "choice": "one word"}


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _type_error(value: ast.Value, s: Setting, found: str, diags: Diagnostics):
    diags.error("E0035", f"`{s.name}` expects {_KIND_TEXT.get(s.kind, s.kind)}, found {found}", value.span,
                label="wrong type", help=f"`{s.name}`: {s.doc}")
    return _BAD


def _task(block: ast.Block, values, children, diags: Diagnostics) -> CheckedTask | None:
    lines = [e for e in block.entries if isinstance(e, ast.InstructionLine)]
    if not lines:
        diags.error("E0038", f"task `{block.label}` has no instruction", block.label_span,
                    label="no `instruction:` line",
                    help="add a line such as `instruction: [IMAGE:img] what does the image describe? -> [TEXT:cap]`")
        return None
    if any(line.instruction is None for line in lines):
        return None  # the parser already reported it
    templates = tuple(t for line in lines for t in line.instruction.templates)
    instr = ast.Instruction(templates, span=lines[0].span.to(lines[-1].span))
    typed = check_instruction(instr, diags)
    if typed is None:
        return None
    if not _check_datasets(block, dict(values), diags):
        return None
    if dict(values).get("metric") == "f_measure" and dict(values).get("positive") is None:
        pair = next(e for e in block.entries if isinstance(e, ast.Pair) and e.key == "metric")
        diags.error("E0045", "`metric = f_measure` without its positive label", pair.value.span,
                    label="binary F1 needs to know which answer counts as positive",
                    help="add a setting such as `positive = \"yes\"` (one of the task's answers)")
        return None
    if dict(values).get("scst") and not _text_target(typed):
        pair = next(e for e in block.entries if isinstance(e, ast.Pair) and e.key == "scst")
        diags.error("E0045", "`scst` on a target that is not text", pair.value.span,
                    label="the reward is the CIDEr-D of generated text",
                    help="use scst on a TEXT target (captioning), or remove it")
        return None
    return CheckedTask(block.label, typed, values, children.get("generate", ()), span=block.span)


def _text_target(typed) -> bool:
    """Whether every template's decoder side is plain text slots (what SCST can reward)."""
    from .typed import slots_of

    def plain_text(template) -> bool:
        slots = [s for item in template.decoder for s in slots_of(item)]
        return bool(slots) and all(s.modality == "TEXT" and s.preprocess == "text" and not s.get("closed_set")
                                   for s in slots)

    return all(plain_text(t) for t in typed)


def _check_datasets(block: ast.Block, values: dict, diags: Diagnostics) -> bool:
    """OFASys' path syntax is one string; `sample_ratios` gives one ratio per training dataset."""
    pairs = {e.key: e for e in block.entries if isinstance(e, ast.Pair)}
    ok = True
    for split in ("train", "valid", "test"):
        items = values.get(split) or ()
        if len(items) > 1 and any("|||" in i or "," in i for i in items):
            diags.error("E0035", f"OFASys' path syntax inside a list in `{split}`", pairs[split].value.span,
                        label="`|||` and `,` in one of several paths",
                        help=f'write it as one string, e.g. `{split} = "a.jsonl,b.jsonl ||| c.jsonl"`, or list plain '
                             "paths (they are concatenated)")
            ok = False
        elif ofasys_paths(items):
            try:
                split_paths(items)
            except ValueError as err:
                diags.error("E0035", f"a bad numbered range in `{split}`", pairs[split].value.span, label=str(err),
                            help="write the range low to high, e.g. `part_[1-3].jsonl` for part_1, part_2, part_3")
                ok = False
    ratios = values.get("sample_ratios") or ()
    if ratios and ok:
        _, datasets = split_paths(values.get("train") or ())
        if len(ratios) != len(datasets):
            diags.error("E0045", f"{len(ratios)} sample ratio{'s' * (len(ratios) != 1)} for {len(datasets)} training "
                        f"dataset{'s' * (len(datasets) != 1)}", pairs["sample_ratios"].value.span,
                        label="one ratio per `|||` part of `train`",
                        help='e.g. `train = "a.jsonl ||| b.jsonl"` with `sample_ratios = [1, 0.5]`')
            ok = False
    return ok


def _check_columns(task: CheckedTask, block: ast.Block, base: Path, diags: Diagnostics, cache: dict) -> None:
    pairs = {e.key: e for e in block.entries if isinstance(e, ast.Pair)}
    names = task.setting("columns", ())
    for split in ("train", "valid", "test"):
        pair = pairs.get(split)
        if pair is None:
            continue
        spans = pair.value.items if isinstance(pair.value, ast.ListValue) else (pair.value,)
        files, _ = split_paths(task.setting(split, ()))
        if ofasys_paths(task.setting(split, ())):  # one string of OFASys' path syntax: its span for every file
            spans = spans * len(files)
        for rel, vspan in zip(files, spans):
            path = (base / rel).resolve()
            if not path.exists():
                diags.error("E0039", f"data file `{rel}` not found", vspan.span, label="no such file",
                            help=f"paths are relative to the task file's folder; looked for {_shown(path)}")
                continue
            key = (path, names)
            if key not in cache:
                try:
                    cache[key] = columns_of(path, names)
                except (DataFileError, OSError, UnicodeDecodeError) as err:
                    cache[key] = err
            cols = cache[key]
            if isinstance(cols, Exception):
                diags.error("E0043", f"cannot read data file `{rel}`", vspan.span, label="unreadable",
                            help=str(cols))
                continue
            if cols is not None:
                _missing(task, split, rel, cols, vspan.span, diags, pairs.get("references"))


def _missing(task: CheckedTask, split: str, rel: str, cols, file_span, diags: Diagnostics,
             refs_pair: ast.Pair | None = None) -> None:
    reported = set()
    refs = task.setting("references")
    if refs is not None and split != "train" and refs not in cols:
        guess = closest(refs, cols)
        diags.error("E0042", f"column `{refs}` is not in `{rel}`", refs_pair.value.span,
                    label="the metric's reference answers are read from this column",
                    notes=(Note(f"the {split} data is declared here", file_span),),
                    help=(f"did you mean `{guess}`? " if guess else "") + f"`{rel}` has columns: " + ", ".join(cols))
    for t in task.templates:
        for s in t.slots():
            # at test time the target column may be absent: it is what the model predicts
            if s.column in cols or s.column in reported or (split == "test" and s.side == "decoder"):
                continue
            reported.add(s.column)
            guess = closest(s.column, cols)
            diags.error("E0042", f"column `{s.column}` is not in `{rel}`", s.column_span or s.span,
                        label=f"read by this {s.modality} slot",
                        notes=(Note(f"the {split} data is declared here", file_span),),
                        help=(f"did you mean `{guess}`? " if guess else "") + f"`{rel}` has columns: "
                        + ", ".join(cols))
