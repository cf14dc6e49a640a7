from .table import COMMON_ATTRS, ENC, Adaptor, Modality, Preprocessor, SlotAttr

_PARAMS = (("num_frames", 8), ("size", 256), ("mean", (0.485, 0.456, 0.406)), ("std", (0.229, 0.224, 0.225)))
_SETTINGS = (("size", "image_size"), ("num_frames", "video_frames"))

MODALITY = Modality(
    name="VIDEO",
    doc="a video clip: N frames sampled uniformly and resized like IMAGE",
    order=5,
    attrs=COMMON_ATTRS + (SlotAttr("num_frames", "int", "number of frames sampled from the clip", lo=1),),
    preprocessors=(
        Preprocessor("video", "decode with PyAV, sample frames, resize, normalize",
                     params=_PARAMS, settings=_SETTINGS),
        # a mirrored clip moves the other way: only for targets that never say left or right
        Preprocessor("video_augment", "as `video`, plus a random horizontal flip at train time",
                     params=_PARAMS, settings=_SETTINGS),
    ),
    adaptors=(Adaptor("video_image_sequence", "per-frame patch embedding plus a frame embedding", ENC, takes="clips"),),
    default_adaptor={"encoder": "video_image_sequence"},
)
