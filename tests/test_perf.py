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
