from .table import BOTH, COMMON_ATTRS, DEC, ENC, TOKEN_ATTRS, Adaptor, Modality, Preprocessor, SlotAttr, Target

TEXT_TARGET = Target(
    head="tokens", loss="label_smoothed_ce", generator="beam", postprocess="text",
    generate_defaults=(("beam", 5), ("max_len", 64), ("min_len", 1), ("len_penalty", 1.0),
                       ("no_repeat_ngram_size", 0), ("temperature", 1.0)),
)

_BPE = ("text", "text_phone")  # the preprocessors that mask or noise BPE tokens

MODALITY = Modality(
    name="TEXT",
    doc="text, tokenized with the run's byte-level BPE tokenizer",
    order=1,
    attrs=COMMON_ATTRS + TOKEN_ATTRS + (
        SlotAttr("mask_ratio", "float", "BART span masking of this fraction of input tokens (training only)",
                 sides=ENC, lo=0.0, hi=1.0, hi_open=True, preprocess=_BPE),
        SlotAttr("noise_ratio", "float", "replace each input token by a random one with this probability "
                 "(training only; on a target it corrupts only the teacher-forced inputs)",
                 lo=0.0, hi=1.0, hi_open=True, preprocess=_BPE),
        SlotAttr("closed_set", "flag", "train and decode constrained to the task's answer set", sides=DEC),
        SlotAttr("is_label", "flag", "documented by OFASys but never used",
                 deprecated="`is_label` has no effect (OFASys never read it)"),
    ),
    preprocessors=(
        Preprocessor("text", "byte-level BPE tokens"),
        Preprocessor("text_phone", "BPE tokens plus phonemes for an encoder CTC loss (ASR targets)", sides=DEC),
        Preprocessor("category", "one token per class label (the classes of the training data)"),
        Preprocessor("table", "a table linearized to text", sides=ENC),
        Preprocessor("database", "a database schema linearized to text", sides=ENC),
    ),
    adaptors=(Adaptor("text", "token embedding shared with the output projection", BOTH, TEXT_TARGET),),
    default_adaptor={"encoder": "text", "decoder": "text"},
    token_like=True,
    token_output="text",
)
