from .table import BOTH, COMMON_ATTRS, DEC, ENC, Adaptor, Modality, Preprocessor, SlotAttr, Target

_SPEECH = Target(head="frames", loss="tacotron2", generator="speech", postprocess="waveform",
                 generate_defaults=(("max_len", 1500), ("eos_threshold", 0.5)))

MODALITY = Modality(
    name="AUDIO",
    doc="speech or sound: a waveform turned into 80-bin log-mel fbank frames",
    order=4,
    attrs=COMMON_ATTRS + (
        SlotAttr("n_frames_per_step", "int", "pack k fbank frames into one step", lo=1),
        SlotAttr("use_mask", "flag", "time/channel masking of the features (training only)", sides=ENC),
    ),
    preprocessors=(
        Preprocessor("audio", "decode, mono, resample, log-mel fbank with utterance normalization",
                     params=(("sample_rate", 16000), ("n_mels", 80), ("max_seconds", 120)),
                     settings=(("sample_rate", "audio_sample_rate"),),
                     # a speech target: OFASys' TTS log-mel (22,050 Hz, STFT 1024/256, 0-8 kHz), 4 frames a step
                     decoder_params=(("sample_rate", 22050), ("n_mels", 80), ("n_fft", 1024), ("hop_length", 256),
                                     ("f_min", 0.0), ("f_max", 8000.0), ("n_frames_per_step", 4),
                                     ("max_seconds", 120))),
        Preprocessor("audio_embed", "pre-extracted features (base64 float32)", sides=ENC,
                     params=(("dim", 439),)),
    ),
    adaptors=(
        Adaptor("audio_fbank", "strided convolution over fbank frames; a prenet on the decoder", BOTH, _SPEECH,
                takes="frames"),
        Adaptor("audio_tgt_fbank", "decoder-only fbank frames with prenet/postnet", DEC, _SPEECH, takes="frames"),
    ),
    default_adaptor={"encoder": "audio_fbank", "decoder": "audio_fbank"},
)
