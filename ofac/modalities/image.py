from .table import COMMON_ATTRS, DEC, ENC, Adaptor, Modality, Preprocessor, SlotAttr, Target

_RESIZE = (("size", 256), ("mean", (0.5, 0.5, 0.5)), ("std", (0.5, 0.5, 0.5)), ("interpolation", "bicubic"))
_SETTINGS = (("size", "image_size"),)

MODALITY = Modality(
    name="IMAGE",
    doc="an image (path, bytes, base64 or array), resized and normalized",
    order=2,
    attrs=COMMON_ATTRS + (
        SlotAttr("mask_ratio", "float", "zero a centred square covering this fraction of the side "
                 "(image infilling input)", sides=ENC, lo=0.0, hi=1.0, hi_open=True),
        SlotAttr("length", "int", "truncate the image-code sequence", lo=1, preprocess=("image_vqgan",)),
    ),
    preprocessors=(
        Preprocessor("image", "resize to a square and normalize", params=_RESIZE, settings=_SETTINGS),
        Preprocessor("imagenet", "train: random resized crop, flip, RandAugment, colour jitter, random erasing; "
                     "evaluation: centre crop", params=_RESIZE, settings=_SETTINGS),
        Preprocessor("imagepretrain", "train: random resize (shorter side S..1.5S), centre crop, RandAugment; "
                     "evaluation: centre square", params=_RESIZE, settings=_SETTINGS),
        Preprocessor("image_vqgan", "the image as grid x grid codes of the run's image tokenizer (image "
                     "generation targets); a cell of code numbers is taken as the codes themselves",
                     params=(("size", 32), ("codes", 256), ("grid", 8)), sides=DEC,
                     settings=(("size", "image_tokenizer.image_size"), ("codes", "image_tokenizer.codes"),
                               ("grid", "image_tokenizer.grid"))),
    ),
    adaptors=(
        Adaptor("image_patch", "convolutional patch embedding (ViT-style)", ENC, takes="pixels"),
        Adaptor("image_resnet", "a small residual convolutional stem trained from scratch (stride patch_size)", ENC,
                takes="pixels"),
        Adaptor("image_vit", "OFASys name, served by the patch embedding", ENC, takes="pixels"),
        Adaptor("image_patch_embed", "OFASys name, served by the patch embedding", ENC, takes="pixels"),
        Adaptor("image_vqgan", "image codes as tokens with 2-D code positions; generates images", DEC,
                Target(head="codes", loss="label_smoothed_ce", generator="sample", postprocess="image",
                       generate_defaults=(("beam", 1), ("top_k", 16), ("temperature", 1.0))),
                preprocess="image_vqgan"),
    ),
    default_adaptor={"encoder": "image_patch", "decoder": "image_vqgan"},
)
