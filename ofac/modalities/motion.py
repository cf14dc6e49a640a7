from .table import BOTH, COMMON_ATTRS, Adaptor, Modality, Preprocessor, SlotAttr, Target

MODALITY = Modality(
    name="MOTION",
    doc="human motion capture frames (BVH-style), in the rot6d representation",
    order=7,
    attrs=COMMON_ATTRS + (
        SlotAttr("max_length", "int", "longest clip in frames", lo=1, default=1000),
        SlotAttr("min_length", "int", "shorter clips are skipped", lo=1, default=10),
        SlotAttr("sample_rate", "int", "temporal subsampling with a random phase", lo=1, default=1),
        SlotAttr("soft_trim", "float", "random centre trimming with Poisson margins", lo=0.0),
        SlotAttr("window", "flag", "a random sub-window between min_length and max_length frames"),
        SlotAttr("anchor_frame", "int", "canonicalize heading and translation to this frame", lo=0),
    ),
    preprocessors=(Preprocessor("motion_6d", "BVH frames to root velocity + 6-D rotations"),),
    adaptors=(Adaptor("motion_6d", "MLP over frames with diffusion-level FiLM", BOTH,
                      Target(head="motion", loss="diffusion", generator="diffusion", postprocess="motion",
                             generate_defaults=(("steps", 50), ("guidance", 1.0))), takes="motion"),),
    default_adaptor={"encoder": "motion_6d", "decoder": "motion_6d"},
)
