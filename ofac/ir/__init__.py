"""The IR: what every stage after the checker runs on, and the contract between the compiler
and the runtime.  `program` has the data types, `kinds` the op vocabulary with its specs,
`verify` the verifier, `serialize` the text and JSON forms."""
from .kinds import OP_KINDS, OpAttr, OpKind
from .program import IR_VERSION, Op, Program, TaskIR
from .serialize import dumps, format_op, format_task, from_json, to_json
from .verify import IRError, verify

__all__ = ["IR_VERSION", "OP_KINDS", "IRError", "OpAttr", "Op", "OpKind", "Program", "TaskIR", "dumps", "format_op",
           "format_task", "from_json", "to_json", "verify"]
