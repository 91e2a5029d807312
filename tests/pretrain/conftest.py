"""The encoder tests' tiny-tower fixtures, shared here."""

from tests.encoders.conftest import (  # noqa: F401  (fixtures are found by name)
    items,
    one_thread,
    tiny_cfg,
    tiny_encoder,
    tiny_image_file,
    tiny_text_dir,
)
