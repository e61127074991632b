from __future__ import annotations

import numpy as np
import pytest

from ppjax.io.batching import bucket_size, group_batches, pad_batch


def test_bucket_sizes_are_few():
    assert [bucket_size(n, 16) for n in (1, 2, 3, 5, 8, 9, 16)] == [1, 2, 4, 8, 8, 16, 16]
    assert bucket_size(5, 6) == 6
    assert len({bucket_size(n, 32) for n in range(1, 33)}) == 6
    with pytest.raises(ValueError):
        bucket_size(17, 16)


def test_pad_batch_repeats_last():
    x = np.arange(6).reshape(3, 2)
    assert (pad_batch(x, 4) == [[0, 1], [2, 3], [4, 5], [4, 5]]).all()
    assert pad_batch(x, 3) is x


def test_group_batches_by_key_in_order():
    keys = ["a", "b", "a", "a", "b", "a"]
    assert list(group_batches(keys, keys, 3)) == [[0, 2, 3], [5], [1, 4]]
