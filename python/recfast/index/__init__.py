"""ItemIndex: item vectors with external ids, filters, similar items, a mappable file, and exact
search from quantized (int8 / float16) storage."""

from __future__ import annotations

from .file_format import FORMAT_MAGIC, FORMAT_VERSION
from .item_index import ItemIndex
from .quantization import STORAGES

__all__ = ["ItemIndex", "FORMAT_MAGIC", "FORMAT_VERSION", "STORAGES"]
