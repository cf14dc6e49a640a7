from .table import COMMON_ATTRS, ENC, TOKEN_ATTRS, Adaptor, Modality, Preprocessor, SlotAttr
from .text import TEXT_TARGET

MODALITY = Modality(
    name="PHONE",
    doc="a phoneme sequence (space-separated symbols) in the phone vocabulary",
    order=6,
    attrs=COMMON_ATTRS + tuple(a for a in TOKEN_ATTRS if a.name in ("max_length", "disable_auto_boseos",
                                                                     "no_loss")) + (
        SlotAttr("mask_ratio", "float", "replace this fraction of phones by the mask symbol (training only)",
                 sides=ENC, lo=0.0, hi=1.0, hi_open=True),
    ),
    preprocessors=(Preprocessor("phone", "phone symbols to phone tokens"),),
    adaptors=(Adaptor("text", "phone tokens share the token embedding", target=TEXT_TARGET),),
    default_adaptor={"encoder": "text", "decoder": "text"},
    token_like=True,
)
