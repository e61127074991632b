"""The model store: which models ppjax knows (:mod:`.registry`), how their files arrive
(:mod:`.download`), how they are converted once and loaded (:mod:`.install`), and the readers
behind conversion: PyTorch checkpoints without running pickled code (:mod:`.torch_checkpoint`)
and the converted Flax variables as safetensors (:mod:`.variables`).
"""

from ppjax.store.download import DownloadError, ModelStoreError, OfflineError, download
from ppjax.store.install import (
    use_jit_cache,
    programs_folder,
    LABELS,
    MANIFEST,
    ONNX,
    WEIGHTS,
    fetch,
    import_files,
    is_installed,
    listing,
    load_model,
    model_dir,
    read_manifest,
    sha256_file,
    store_root,
    verify,
)
from ppjax.store.registry import KNOWN_MODELS, MODEL_GROUPS, SourceFile, StoreEntry, classifier_names, entry, onnx_model_names

__all__ = [
    "DownloadError", "ModelStoreError", "OfflineError", "download",
    "LABELS", "MANIFEST", "ONNX", "WEIGHTS",
    "fetch", "import_files", "is_installed", "listing", "load_model", "model_dir", "read_manifest", "sha256_file", "store_root", "use_jit_cache", "programs_folder", "verify",
    "KNOWN_MODELS", "MODEL_GROUPS", "SourceFile", "StoreEntry", "classifier_names", "entry", "onnx_model_names",
]  # fmt: skip
