"""The run's vocabulary: the byte-level BPE tokenizer with its reserved tokens (box bins,
image codes, phones).  How a run trains one on its data is `data.corpus`."""
