"""Learned codecs: what turns an output modality into the tokens the decoder writes, and back.

  config.py     its sizes (image side, grid, codebook)
  image.py      the image tokenizer's network, a small VQ-VAE (images <-> grid x grid codes)
  training.py   training it on a run's images (stage 0 of `ofac run`), with its report
  tokenizer.py  a trained tokenizer on disk (safetensors + JSON config + report), the codes of a
                run's images computed once and cached, and decoding codes back to pixels in
                PyTorch or, in an export folder, ONNX Runtime
  speech.py     speech outputs: the statistics that normalize a run's log-mel targets and the
                Griffin-Lim vocoder that turns generated frames into a waveform"""
