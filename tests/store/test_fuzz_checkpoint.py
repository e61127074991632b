"""The checkpoint reader and the Keras HDF5 reader under mutation fuzzing (tests/fuzzing.py), seeded
with official-layout checkpoints (legacy, zip, and the 2017 Python 2 / CUDA form) and a Keras-2
file: every malformed input gives the reader's own clear error. A fixed budget runs here; a longer
run is `python -m tests.fuzzing checkpoint keras --seconds 600`."""

from __future__ import annotations

import pytest

from ..fuzzing import run_target

pytest.importorskip("torch")


@pytest.mark.slow
@pytest.mark.parametrize("target, executions", [("checkpoint", 3000), ("keras", 20)])  # keras: a process each
def test_fuzzed_files_give_clean_errors(target, executions):
    report = run_target(target, executions=executions, seed=1)
    assert report.executions == executions
    assert not report.crashes, report.line() + "\n" + report.crashes[0][1]
    assert report.clean_errors > executions // 5  # the mutations did reach the error paths


@pytest.mark.slow
def test_a_keras_file_on_which_hdf5_loops_forever_is_refused_in_time():
    """Found by the fuzzer (one mutation of a Keras-2 file): h5py never returns from reading it, in
    the calling process it hung the run. The reader's child process is stopped at its timeout."""
    from pathlib import Path

    from ppjax.export.keras_to_flax import read_keras2_weights
    from ppjax.store.torch_checkpoint import CheckpointFormatError

    path = Path(__file__).resolve().parents[1] / "data" / "keras_weights_hdf5_loops.h5"
    with pytest.raises(CheckpointFormatError, match="did not finish within 3 s"):
        read_keras2_weights(path, timeout=3.0)
