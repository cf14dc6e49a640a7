"""Parsing: source text -> AST (ofac.syntax), with every Lark error turned into a Diagnostic."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import syntax as ast
from .diagnostics import Diagnostics
from .modalities import MODALITY_NAMES
from .names import closest
from .source import SourceFile, Span

_TEXT_TOKENS = frozenset({"PLAIN", "LPAR", "RPAR", "LSQB", "RSQB"})
_SLOT_HEAD = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z0-9_]*))?")
_SLOT_ATTR = re.compile(r',(?:([A-Za-z_][A-Za-z0-9_]*)(?:(=)("[^"\n]*"|[^,\[\]\s"]+)?)?)?')
_SLOT_OPEN = re.compile(r"\[[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*[:,\]]")


@lru_cache(maxsize=None)
def _parser(name: str) -> Lark:
    text = resources.files("ofac.grammar").joinpath(f"{name}.lark").read_text()
    return Lark(text, parser="lalr", lexer="contextual", maybe_placeholders=False)


# --------------------------------------------------------------------------- instruction

def parse_instruction(text: str, source: SourceFile | None = None, base: int = 0):
    """Parse one instruction.  `base` is the offset of `text` inside `source`
    (an instruction line of a `.ofa` file).  Returns (Instruction | None, Diagnostics)."""
    source = source or SourceFile("<instruction>", text)
    diags = Diagnostics()
    try:
        tree = _parser("instruction").parse(text)
    except UnexpectedInput as err:
        diags.add(_instruction_error(err, text, source, base))
        return None, diags
    builder = _InstructionBuilder(source, base, diags)
    return builder.instruction(tree, len(text)), diags


class _InstructionBuilder:
    def __init__(self, source: SourceFile, base: int, diags: Diagnostics):
        self.source, self.base, self.diags = source, base, diags

    def span(self, start: int, end: int) -> Span:
        return Span(self.source, self.base + start, self.base + end)

    def tok_span(self, tok: Token, strip: bool = True) -> Span:
        end = tok.start_pos + (len(tok.value.rstrip()) if strip else len(tok.value))
        return self.span(tok.start_pos, end)

    def instruction(self, tree: Tree, length: int) -> ast.Instruction:
        templates, start = [], 0
        parts = [c for c in tree.children if isinstance(c, Tree)]
        seps = [c for c in tree.children if isinstance(c, Token)]
        for i, t in enumerate(parts):
            end = seps[i].start_pos if i < len(seps) else length
            templates.append(self.template(t, start, end))
            if i < len(seps):
                start = seps[i].end_pos
        return ast.Instruction(tuple(templates), span=self.span(0, length))

    def template(self, tree: Tree, start: int, end: int) -> ast.Template:
        arrows = [c for c in tree.children if isinstance(c, Token)]
        sides = tuple(self.items(s.children) for s in tree.children if isinstance(s, Tree))
        lo, hi = _trim(self.source.text, self.base + start, self.base + end)
        return ast.Template(sides, span=Span(self.source, lo, max(lo, hi)),
                            arrow_spans=tuple(self.tok_span(a) for a in arrows))

    def items(self, children) -> tuple[ast.Item, ...]:
        out: list[ast.Item] = []
        run: list[Token] = []  # consecutive plain-text tokens are one Text
        for child in children:
            if isinstance(child, Token):
                if child.type in _TEXT_TOKENS:
                    run.append(child)
                    continue
                self.flush_text(run, out)
                item = self.slot_token(child) if child.type == "SLOT" else self.marker(child)
            else:
                self.flush_text(run, out)
                item = self.repeat(child) if child.data == "repeat" else self.slot(child)
            if isinstance(item, ast.Text) and out and isinstance(out[-1], ast.Text):
                item = self.joined(out.pop(), item)
            out.append(item)
        self.flush_text(run, out)
        return tuple(out)

    def joined(self, a: ast.Text, b: ast.Text) -> ast.Text:
        span = a.span.to(b.span)
        return ast.Text(span.text, span=span)

    def flush_text(self, run: list[Token], out: list) -> None:
        if not run:
            return
        lo, hi = _trim(self.source.text, self.base + run[0].start_pos, self.base + run[-1].end_pos)
        run.clear()
        if hi > lo:
            text = ast.Text(self.source.text[lo:hi], span=Span(self.source, lo, hi))
            out.append(self.joined(out.pop(), text) if out and isinstance(out[-1], ast.Text) else text)

    def marker(self, tok: Token) -> ast.Marker:
        return ast.Marker(tok.value[1:-1], span=self.tok_span(tok))

    def repeat(self, tree: Tree) -> ast.Repeat:
        open_, close = tree.children[0], tree.children[-1]
        inner = self.items(tree.children[1:-1])
        return ast.Repeat(inner, span=self.span(open_.start_pos, close.end_pos))

    def slot(self, tree: Tree):
        toks = [t for t in tree.scan_values(lambda v: isinstance(v, Token))]
        open_, name, close = toks[0], tree.children[1], toks[-1]
        span = self.span(open_.start_pos, close.end_pos)
        column = column_span = None
        attrs: list[ast.Attr] = []
        for child in tree.children[2:-1]:
            if child.data == "column":
                if len(child.children) > 1:
                    column = child.children[1].value.rstrip()
                    column_span = self.tok_span(child.children[1])
                else:
                    column = ""
                    column_span = self.tok_span(child.children[0])
            else:
                attrs.extend(self.attrs(child))
        modality = name.value.rstrip()
        slot = ast.Slot(modality, column, tuple(attrs), span=span,
                        modality_span=self.tok_span(name), column_span=column_span)
        if column is None and not attrs and _looks_like_text(modality):
            return self.bracket_text(span)
        self.check_blanks(toks[:-1], span)
        return slot

    def slot_token(self, tok: Token):
        """A well-formed slot lexed as one token: split it with one regex."""
        text, at = tok.value, self.base + tok.start_pos
        head = _SLOT_HEAD.match(text)
        name, column = head.group(1), head.group(2)
        column_span = None
        if column is not None:
            column_span = Span(self.source, at + head.start(2) - (not column), at + head.end(2))
        attrs, empty = [], None
        for m in _SLOT_ATTR.finditer(text, head.end()):
            if m.group(1) is None:
                empty = empty or Span(self.source, at + m.start(), at + m.start() + 1)
                continue
            value = value_span = None
            if m.group(2) is not None:  # `key=` or `key=value`
                value = m.group(3) or ""
                vs, ve = (m.start(3), m.end(3)) if m.group(3) is not None else (m.start(2), m.end(2))
                value_span = Span(self.source, at + vs, at + ve)
                if value.startswith('"'):
                    value = value[1:-1]
            attrs.append(ast.Attr(m.group(1), value, span=Span(self.source, at + m.start(1), at + m.end()),
                                  value_span=value_span))
        span = Span(self.source, at, at + len(text))
        if column is None and not attrs and empty is None and _looks_like_text(name):
            return self.bracket_text(span)
        if empty is not None:
            self.diags.warning("W0104", "empty attribute in slot", empty,
                               label="`,` with no attribute after it", help="remove the extra `,`")
        return ast.Slot(name, column, tuple(attrs), span=span,
                        modality_span=Span(self.source, at + 1, at + 1 + len(name)), column_span=column_span)

    def bracket_text(self, span: Span) -> ast.Text:
        # `[A]`, `[MASK]`: OFASys keeps bracketed words that are no slot as text.
        self.diags.warning(
            "W0103", f"`{span.text}` is read as plain text, not as a slot", span, label="not a modality",
            help="this is fine if you meant the literal text; a slot is written `[MODALITY:column]`")
        return ast.Text(span.text, span=span)

    def attrs(self, tree: Tree) -> list[ast.Attr]:
        out = []
        for child in tree.children:
            if isinstance(child, Token):  # a comma
                continue
            key = child.children[0]
            value = value_span = None
            if len(child.children) > 1:
                value = ""
                value_span = self.tok_span(child.children[1])
                if len(child.children) > 2:
                    tok = child.children[2]
                    value, value_span = tok.value.rstrip(), self.tok_span(tok)
                    if value.startswith('"'):
                        value = value[1:-1]
            end = value_span.end if value_span else self.base + key.start_pos + len(key.value.rstrip())
            out.append(ast.Attr(key.value.rstrip(), value,
                                span=Span(self.source, self.base + key.start_pos, end),
                                value_span=value_span))
        kids = tree.children
        for i, child in enumerate(kids):
            if isinstance(child, Token) and (i + 1 == len(kids) or isinstance(kids[i + 1], Token)):
                self.diags.warning("W0104", "empty attribute in slot", self.span(child.start_pos, child.start_pos + 1),
                                   label="`,` with no attribute after it", help="remove the extra `,`")
                break
        return out

    def check_blanks(self, toks: list[Token], slot_span: Span) -> None:
        for tok in toks:
            stripped = tok.value.rstrip() if tok.type != "SLOT_OPEN" else "["
            if len(stripped) != len(tok.value):
                blank = self.span(tok.start_pos + len(stripped), tok.end_pos)
                self.diags.error(
                    "E0003", "whitespace inside a slot", blank, label="remove this space",
                    notes=(ast_note("in this slot", slot_span),),
                    help="a slot has no spaces: `[TEXT:column,attr=value]`; OFASys would have read "
                         "this slot silently as plain text")
                return


def ast_note(message: str, span: Span):
    from .diagnostics import Note

    return Note(message, span)


def _looks_like_text(name: str) -> bool:
    return closest(name, MODALITY_NAMES) is None and name.upper() != "CATEGORY"


def _trim(text: str, lo: int, hi: int) -> tuple[int, int]:
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _error_pos(err: UnexpectedInput, length: int) -> tuple[int, str]:
    if isinstance(err, UnexpectedCharacters):
        return err.pos_in_stream, err.char
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        return err.token.start_pos, err.token.value
    return length, ""


def _instruction_error(err: UnexpectedInput, text: str, source: SourceFile, base: int):
    from .diagnostics import Diagnostic, Severity

    pos, found = _error_pos(err, len(text))
    opens = [m for m in _SLOT_OPEN.finditer(text) if m.start() < pos and "]" not in text[m.end():pos]]
    at = Span(source, base + pos, base + pos + max(1, len(found.rstrip())) if found else base + pos)
    if opens:
        start = opens[-1].start()
        slot = Span(source, base + start, base + max(pos, start + 1))
        close = text.find("]", start)
        if close < 0 or re.search(r"\[|->|\|\|\|", text[start + 1:close]):
            return Diagnostic("E0002", Severity.ERROR, "unclosed slot: missing `]`", slot,
                              label="this slot is never closed", help="close the slot with `]`")
        return Diagnostic(
            "E0002", Severity.ERROR, f"malformed slot: unexpected `{_shown(found.strip() or found)}`", at,
            label="not allowed here", help="a slot is written `[MODALITY:column,attr=value]`; column and "
            "attribute names use letters, digits and `_`")
    return Diagnostic("E0001", Severity.ERROR, f"syntax error: unexpected `{_shown(found.strip())}`" if found else
                      "syntax error: unexpected end of instruction", at, label="unexpected here")


# --------------------------------------------------------------------------- task file

_MAX_SYNTAX_ERRORS = 20


def parse_file(text: str, name: str = "<file>"):
    """Parse a `.ofa` task file.  Returns (TaskFile | None, Diagnostics, SourceFile).

    After a syntax error the parser resynchronizes: it blanks the offending line (keeping its
    braces, so that blocks still nest, and every offset, so that spans stay exact) and parses
    again, so that one run reports every syntax error of the file."""
    source = SourceFile(name, text)
    diags = Diagnostics()
    work, last = text, -1
    while True:
        try:
            tree = _parser("taskfile").parse(work)
            break
        except UnexpectedInput as err:
            pos = _error_pos(err, len(work))[0]
            diags.add(_file_error(err, work, source))
            if pos <= last or pos >= len(work) or diags.error_count >= _MAX_SYNTAX_ERRORS:
                return None, diags, source
            work, last = _blank_line(work, pos), pos
    if diags.has_errors:
        return None, diags, source
    blocks = tuple(_block(b, source, diags) for b in tree.children)
    return ast.TaskFile(blocks, source_name=name), diags, source


def _blank_line(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    line = "".join(ch if ch in "{}" else " " for ch in text[start:end])
    return text[:start] + line + text[end:]


def _block(tree: Tree, source: SourceFile, diags: Diagnostics) -> ast.Block:
    kind = tree.children[0]
    label = tree.children[1] if tree.children[1].type == "LABEL" else None
    entries = []
    for child in tree.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "block":
            entries.append(_block(child, source, diags))
        elif child.data == "pair":
            key, _, value = child.children
            vspan = _value(value, source)
            entries.append(ast.Pair(key.value, vspan, span=Span(source, key.start_pos, vspan.span.end),
                                    key_span=_tspan(key, source)))
        else:
            entries.append(_instruction_line(child.children[0], source, diags))
    rbrace = tree.children[-1]
    return ast.Block(kind.value, label.value if label else None, tuple(entries),
                     span=Span(source, kind.start_pos, rbrace.end_pos), kind_span=_tspan(kind, source),
                     label_span=_tspan(label, source) if label else None)


def _instruction_line(tok: Token, source: SourceFile, diags: Diagnostics) -> ast.InstructionLine:
    colon = tok.value.index(":")
    raw = tok.value[colon + 1:].rstrip("\r")
    instr, sub = parse_instruction(raw, source, base=tok.start_pos + colon + 1)
    diags.extend(sub)
    return ast.InstructionLine(instr, raw.strip(), span=Span(source, tok.start_pos, tok.start_pos + len(tok.value)))


def _value(tree: Tree, source: SourceFile) -> ast.Value:
    if tree.data == "list":
        items = tuple(_value(c, source) for c in tree.children if isinstance(c, Tree))
        return ast.ListValue(items, span=Span(source, tree.children[0].start_pos, tree.children[-1].end_pos))
    tok = tree.children[0]
    if tok.type == "STRING":
        text = re.sub(r"\\(.)", r"\1", tok.value[1:-1])
        return ast.Scalar(text, True, span=_tspan(tok, source))
    return ast.Scalar(tok.value, False, span=_tspan(tok, source))


def _tspan(tok: Token, source: SourceFile) -> Span:
    return Span(source, tok.start_pos, tok.end_pos)


def _file_error(err: UnexpectedInput, text: str, source: SourceFile):
    from .diagnostics import Diagnostic, Severity

    pos, found = _error_pos(err, len(text))
    at = Span(source, pos, pos + max(1, len(found)) if found else pos)
    if not found:
        depth, opened = 0, None
        for m in re.finditer(r"[{}]|#[^\n]*|instruction[ \t]*:[^\n]*|\"(?:[^\"\\\n]|\\.)*\"", text):
            if m.group() == "{":
                depth, opened = depth + 1, m.start() if depth == 0 else opened
            elif m.group() == "}":
                depth -= 1
        if depth > 0 and opened is not None:
            return Diagnostic("E0040", Severity.ERROR, "unclosed block: missing `}`",
                              Span(source, opened, opened + 1), label="this `{` is never closed",
                              help="add `}` at the end of the block")
        return Diagnostic("E0001", Severity.ERROR, "syntax error: unexpected end of file", at)
    if found == ":":
        return Diagnostic("E0041", Severity.ERROR, "settings are written `key = value`", at,
                          label="expected `=`", help="only `instruction:` takes the rest of its line; "
                          "write other settings as `key = value`")
    expected = _expected(err)
    return Diagnostic("E0001", Severity.ERROR, f"syntax error: unexpected `{_shown(found)}`", at,
                      label="unexpected here", help=f"expected {expected}" if expected else "")


def _shown(text: str) -> str:
    """Text for a message: control characters (which a terminal would swallow) as escapes."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


_TERMINAL_TEXT = {"NAME": "a setting name", "LBRACE": "`{`", "RBRACE": "`}`", "EQUALS": "`=`",
                  "STRING": "a value", "BARE": "a value", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`",
                  "INSTRUCTION": "`instruction:`", "LABEL": "a name"}


def _expected(err: UnexpectedInput) -> str:
    names = getattr(err, "expected", None) or getattr(err, "allowed", None) or ()
    words = sorted({_TERMINAL_TEXT.get(n, "") for n in names} - {""})
    return " or ".join(words)
