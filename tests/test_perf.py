"""get_md.perf: the CPU allocator and TorchScript executor settings."""

import sys

import pytest

from get_md.perf import tune_cpu_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_cpu_allocator_applies_once_and_is_idempotent():
    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator() is True


def test_plain_executor_is_thread_local_and_changes_no_result():
    """plain_executor switches TorchScript's optimising executor off for this thread only;
    a GET force call gives the same energy and forces either way (float64)."""
    import threading

    import torch

    from get_md.graph import MolecularGraph
    from get_md.models import build_model
    from get_md.perf import plain_executor

    assert torch._C._get_graph_executor_optimize()
    seen = []
    with plain_executor():
        assert not torch._C._get_graph_executor_optimize()
        t = threading.Thread(target=lambda: seen.append(torch._C._get_graph_executor_optimize()))
        t.start()
        t.join()
    assert seen == [True] and torch._C._get_graph_executor_optimize()

    torch.manual_seed(0)
    model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=2, cutoff=4.0).double()
    g = MolecularGraph.from_atoms(torch.rand(12, 3, dtype=torch.float64) * 5, torch.tensor([6, 1, 1, 8] * 3))
    plain, default = torch.jit.script(model), torch.jit.script(model)
    for _ in range(3):  # past the profiling executor's first calls
        with plain_executor():
            a = plain(*g.inputs())
        b = default(*g.inputs())
    for k in ("energy", "forces"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-12)


def test_plugins_and_workflows_call_models_with_the_plain_executor(monkeypatch):
    """LoadedModel.run (ASE calculator, PythonForce) and the rescoring workflows'
    run_model run the module inside plain_executor."""
    import torch
    from get_md.workflows.rescoring import model as wf

    from get_md.graph import MolecularGraph
    from get_md.runtime import LoadedModel

    flags = []

    class Probe(torch.nn.Module):
        def forward(self, *inputs):
            flags.append(torch._C._get_graph_executor_optimize())
            return {"energy": torch.zeros(1)}

    lm = LoadedModel(Probe(), {}, "get", "energy", 5.0, None, False, "probe", torch.device("cpu"), torch.float32)
    lm.run([torch.zeros(1, 3)])
    spec = wf.ModelRef(path="probe.pt", blocks="residues")
    monkeypatch.setattr(wf, "get_module", lambda s: Probe())
    wf.run_model(spec, MolecularGraph.from_atoms(torch.zeros(1, 3), torch.tensor([6])))
    assert flags == [False, False]


def test_use_plain_executor_switches_this_thread_until_restored():
    """use_plain_executor (what create_force does for TorchForce) turns the optimising
    executor off for the calling thread only, returns the previous value, and
    restore_executor puts it back."""
    import threading

    import torch

    from get_md.perf import restore_executor, use_plain_executor

    assert torch._C._get_graph_executor_optimize()
    previous = use_plain_executor()
    try:
        assert previous is True and not torch._C._get_graph_executor_optimize()
        assert use_plain_executor() is False  # already plain
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch._C._get_graph_executor_optimize()))
        t.start()
        t.join()
        assert seen == [True]
    finally:
        restore_executor(previous)
    assert torch._C._get_graph_executor_optimize()


def _flush_supported() -> bool:
    import torch

    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    return supported


@pytest.mark.skipif(not _flush_supported(), reason="CPU without FTZ/DAZ")
def test_flush_denormals_reaches_torch_worker_threads_and_restores():
    """Inside flush_denormals a subnormal float32 reads as zero on every intra-op worker
    (an elementwise product large enough to be split across threads), also when the
    worker pool existed before; outside, subnormals are kept again."""
    import torch

    from get_md.perf import flush_denormals

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny = torch.full((1_000_000,), 1e-39)
        assert (tiny * 1.0).min() > 0  # the pool now exists, subnormals kept
        with flush_denormals():
            with flush_denormals():  # nested: the inner exit keeps the outer setting
                pass
            assert torch.count_nonzero(tiny * 1.0) == 0
        assert torch.count_nonzero(tiny * 1.0) == tiny.numel()
    finally:
        torch.set_num_threads(n)


def test_models_run_inside_flush_denormals_with_the_same_outputs(monkeypatch):
    """LoadedModel.run and the rescoring workflows' run_model flush subnormals; a GET
    score model gives the same outputs with and without (float32)."""
    import torch
    from get_md.workflows.rescoring import model as wf

    from get_md import perf, runtime
    from get_md.graph import MolecularGraph
    from get_md.models import build_model

    torch.manual_seed(0)
    model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=2, cutoff=4.0,
                        mode="score", task="score").eval()
    g = MolecularGraph.from_atoms(torch.rand(12, 3) * 5, torch.tensor([6, 1, 1, 8] * 3))
    with torch.no_grad():
        plain = model(*g.inputs())
    depths = []
    original = perf.flush_denormals

    def probe():
        depths.append(True)
        return original()

    monkeypatch.setattr(perf, "flush_denormals", probe)
    monkeypatch.setattr(runtime, "flush_denormals", probe)
    spec = wf.ModelRef(path="probe.pt", blocks="residues")
    monkeypatch.setattr(wf, "get_module", lambda s: model)
    flushed = wf.run_model(spec, g)
    lm = runtime.LoadedModel(model, {}, "get", "score", 4.0, None, False, "probe", torch.device("cpu"),
                             torch.float32)
    loaded = lm.run(g.inputs())
    assert depths == [True, True]
    for k, v in plain.items():
        torch.testing.assert_close(flushed[k], v, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(loaded[k], v, rtol=1e-6, atol=1e-6)
