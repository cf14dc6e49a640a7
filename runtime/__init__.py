"""ofac.runtime: executes lowered IR programs with PyTorch (the data path, the model, training,
generation, serving).  It depends on `ofac.ir` (and the compiler's pure-Python tables), never
on the parser; see ARCHITECTURE.md for the package map and what each package may import."""

from .threads import openmp_defaults  # noqa: E402  (before any module of the runtime loads torch)

openmp_defaults()
