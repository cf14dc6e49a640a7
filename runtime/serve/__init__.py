"""Serving a trained model: `answer.OFASys` (tasks and new instructions, n-best outputs) with
its two backends, eager PyTorch (`eager`) and ONNX Runtime without torch (`deployed` over
`onnx`); `export` writes the ONNX graphs; `evaluation` is `ofac eval`; `infer` is `ofac infer`."""
