"""The edges where pixels meet files: decoding and encoding images (:mod:`.images`; uint8 only
here, float32 [0, 1] everywhere else) and shaping them into jit-friendly batches (:mod:`.batching`)."""

from ppjax.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    PHOTO_FORMATS,
    ImageHeader,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    iter_image_files,
    read_header,
    read_image,
    resize_shorter_side,
    to_float01,
    to_uint8,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "PHOTO_FORMATS", "ImageHeader", "ImageReadError", "ImageWriteError", "LoadedImage",
    "iter_image_files", "read_header", "read_image", "resize_shorter_side", "to_float01", "to_uint8", "write_image",
]  # fmt: skip
