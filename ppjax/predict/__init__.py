"""Models applied to image files: scene classification (:mod:`.classify`) and NIMA appeal
(:mod:`.score`), in shape-grouped, bucket-padded batches."""
