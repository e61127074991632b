"""`ppjax app`: a local web page to protect photos without a terminal (see :mod:`.server`)."""
