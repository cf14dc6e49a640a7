"""ofac.runtime: executes lowered IR programs with PyTorch (the data path, the model, training,
generation, serving).  It depends on `ofac.ir` (and the compiler's pure-Python tables), never
on the parser; see ARCHITECTURE.md for the package map and what each package may import."""
