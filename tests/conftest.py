"""Shared fixtures."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: a second thread only adds contention (and makes timings of shared machines noisier)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compiled_calls(monkeypatch):
    """Counts the loops that really ran compiled."""
    import neurosim.kernels.compiled

    calls = []
    original = neurosim.kernels.compiled.try_run_compiled

    def spy(*args, **kwargs):
        done = original(*args, **kwargs)
        calls.append(done is not None)
        return done

    monkeypatch.setattr(neurosim.kernels.compiled, "try_run_compiled", spy)
    return calls
