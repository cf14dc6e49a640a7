"""ofac.runtime: executes lowered IR Programs with PyTorch (data path, model, training,
generation).  It depends on ofac.ir, never on the parser.  Filled by the runtime issues;
the compiler (`ofac`) never imports this package."""
