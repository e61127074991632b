"""Pure image operations on float32 (N, H, W, 3) batches in [0, 1], differentiable and jit-, vmap-
and grad-safe: quality metrics (:mod:`.metrics`), a differentiable JPEG round trip (:mod:`.jpeg`)
and the concealment map of where a change would not show (:mod:`.concealment`)."""
