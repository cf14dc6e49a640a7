"""The model's configuration: sizes from the `.ofa` model block (a preset and its overrides),
plus what the run's tasks need (encoder adaptors, output heads, box bins, image codes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ofac.settings import model_sizes, size_conflicts, uses_resnet_stem

from ..errors import NotSupportedYet


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    ffn_dim: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    heads: int = 4  # attention heads
    dropout: float = 0.1  # on embeddings and residual branches
    attention_dropout: float = 0.0  # on attention probabilities (0 keeps SDPA on its fused kernels)
    activation_dropout: float = 0.0  # inside the feed-forward block
    max_positions: int = 1024
    image_size: int = 256
    patch_size: int = 16
    n_mels: int = 80
    video_frames: int = 8
    video_stem: str = "patch"  # how video_image_sequence embeds a frame: "patch" or "resnet"
    adaptors: tuple[str, ...] = ("text",)  # encoder adaptors the run's tasks use
    outputs: tuple[str, ...] = ("tokens",)  # output heads the run's tasks use
    bin_ids: tuple[int, int] = (0, 0)  # (first id, count) of the box-bin tokens: initialized in order
    code_ids: tuple[int, int] = (0, 0)  # (first id, count) of the image-code tokens (the code head's range)
    code_grid: int = 0  # codes per side of a generated image (the code head's 2-D positions)
    frame_dim: int = 0  # values per step of a speech output (n_mels * n_frames_per_step: the frames head)
    motion_dim: int = 0  # features per frame of the run's motion (6 + 6 x joints: the motion adaptor and head)

    @classmethod
    def from_settings(cls, model: dict, vocab_size: int, adaptors, bin_ids: tuple[int, int] = (0, 0),
                      outputs=("tokens",), code_ids: tuple[int, int] = (0, 0), code_grid: int = 0,
                      frame_dim: int = 0, motion_dim: int = 0) -> "ModelConfig":
        """From a `.ofa` model block: the preset, then any field it overrides."""
        if model.get("positions", "learned") != "learned":
            raise NotSupportedYet(f"`positions = {model['positions']}`",
                                  help="the model's positions are learned embeddings; leave `positions` out")
        return cls(vocab_size=vocab_size, adaptors=tuple(sorted(set(adaptors))), bin_ids=tuple(bin_ids),
                   outputs=tuple(sorted(set(outputs))), code_ids=tuple(code_ids), code_grid=code_grid,
                   frame_dim=frame_dim, motion_dim=motion_dim, **model_sizes(model))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From `to_dict` output read back from JSON (lists become tuples again)."""
        return cls(**{**d, "adaptors": tuple(d["adaptors"]), "bin_ids": tuple(d.get("bin_ids", (0, 0))),
                      "outputs": tuple(d.get("outputs", ("tokens",))), "code_ids": tuple(d.get("code_ids", (0, 0)))})

    def __post_init__(self):
        conflicts = size_conflicts(self.d_model, self.heads, self.image_size, self.patch_size,
                                   any(uses_resnet_stem(a, self.video_stem) for a in self.adaptors))
        if conflicts:
            raise ValueError(f"{conflicts[0].message}: {conflicts[0].help}")
