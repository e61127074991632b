"""ppjax: protect photos against automatic scene classifiers, in JAX.

Images inside the library are float32 NHWC arrays with pixel values in [0, 1]; uint8 appears only
when files are read or written (:mod:`ppjax.io`). Models come from the store (:mod:`ppjax.store`).
"""

__version__ = "0.1.0"
