from .table import COMMON_ATTRS, TOKEN_ATTRS, Adaptor, Modality, Preprocessor
from .text import TEXT_TARGET

MODALITY = Modality(
    name="BOX",
    doc="a box `x0,y0,x1,y1` in pixels of its image, as four quantized bin tokens",
    order=3,
    attrs=COMMON_ATTRS + tuple(a for a in TOKEN_ATTRS if a.name in ("disable_auto_boseos", "no_loss")),
    preprocessors=(Preprocessor("box", "co-transform with the task's image, quantize to bins",
                                params=(("bins", 1000),), settings=(("bins", "box_bins"),)),),
    adaptors=(Adaptor("text", "bin tokens share the token embedding", target=TEXT_TARGET),),
    default_adaptor={"encoder": "text", "decoder": "text"},
    token_like=True,
    token_output="box",
)
