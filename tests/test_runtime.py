"""get_md.runtime: the one model loader (plugins, rescoring and N-body go through it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from get_md import export, runtime
from get_md.graph import MolecularGraph, batch_graphs

try:
    from tests.plugin_helpers import ethanol, tiny_get
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from plugin_helpers import ethanol, tiny_get


def test_parse_dtype_names_aliases_and_errors():
    assert runtime.parse_dtype(None) is torch.float32
    assert runtime.parse_dtype(None, default=None) is None
    for name in ("float64", "double", "FP64", "torch.float64", torch.float64):
        assert runtime.parse_dtype(name) is torch.float64
    for name in ("float32", "single", "mixed", "float"):
        assert runtime.parse_dtype(name) is torch.float32
    with pytest.raises(ValueError, match="unknown floating dtype 'int8'"):
        runtime.parse_dtype("int8")
    with pytest.raises(ValueError, match="dtype must be floating"):
        runtime.parse_dtype(torch.int64)


def test_old_names_are_the_runtime_functions():
    import get_md

    assert get_md.load_model is runtime.load_model
    assert export.load_model is runtime.load_model
    assert export.resolve_model_path is runtime.resolve_model_path


def test_export_does_not_import_the_zoo_and_the_zoo_adds_its_registry_check():
    code = ("import sys, get_md.export as e; assert 'get_md.zoo' not in sys.modules, 'zoo imported'; "
            "assert not e.LOAD_CHECKS; import get_md.zoo; print(sorted(e.LOAD_CHECKS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['zoo registry']"


def test_loading_never_changes_the_callers_module():
    """An in-memory module in training mode, asked for in float64: the runtime works on a
    copy (plugins through runtime.load, N-body through load_nbody_model)."""
    from get_md.workflows.nbody import NBodyGeoMFormer, load_nbody_model

    for module in (tiny_get().train(), NBodyGeoMFormer(d_model=16, n_layers=1, n_heads=2, n_rbf=8)):
        module.train()
        if isinstance(module, NBodyGeoMFormer):
            got, _meta, label = load_nbody_model(module, dtype=torch.float64)
            assert label == "NBodyGeoMFormer"
        else:
            got = runtime.load(module, dtype="float64").module
        assert got is not module and not got.training
        assert next(got.parameters()).dtype == torch.float64
        assert module.training and next(module.parameters()).dtype == torch.float32


def test_loaded_model_copied_to_another_dtype_and_kept_otherwise():
    lm = runtime.load(tiny_get(), dtype="float64")
    assert runtime.load(lm, dtype=torch.float64) is lm
    lm32 = runtime.load(lm, dtype="float32")
    assert lm32.dtype == torch.float32 and next(lm32.module.parameters()).dtype == torch.float32
    assert next(lm.module.parameters()).dtype == torch.float64


def _graph(atoms) -> MolecularGraph:
    return MolecularGraph.from_atoms(torch.as_tensor(atoms.positions), torch.as_tensor(atoms.numbers))


def test_run_graph_on_a_batch_matches_single_structures_with_their_charges():
    """run_graph spreads each structure's total charge over its own atoms (counts per
    structure of the batch) and moves the graph to the model's dtype."""
    module = tiny_get()
    module.needs_charge = True  # read through forward_with_vectors(pos, vel, charges, ...)
    lm = runtime.load(module, dtype="float64")
    assert lm.needs_charge
    water = ethanol()[:3]
    a, b = _graph(ethanol()), _graph(water)
    batch = lm.run_graph(batch_graphs([a, b]), [0.0, 1.0])
    e_a = lm.run_graph(a, [0.0])["energies"].sum()
    e_b = lm.run_graph(b, [1.0])["energies"].sum()
    e_b0 = lm.run_graph(b, [0.0])["energies"].sum()
    n = a.num_atoms
    assert float(batch["energies"][:n].sum()) == pytest.approx(float(e_a), rel=1e-12)
    assert float(batch["energies"][n:].sum()) == pytest.approx(float(e_b), rel=1e-12)
    assert float(e_b) != pytest.approx(float(e_b0), abs=1e-6), "the charge reaches the model"
    with pytest.raises(ValueError, match="needs the total charge"):
        lm.run_graph(a)


def test_half_precision_unknown_devices_and_tasks_are_refused_naming_the_caller(monkeypatch):
    """float16 / bfloat16 had run silently (ethanol's energy off by 0.02 / 0.5 eV) or
    overflowed inside a score model; a CUDA device on a machine without one had been
    reported as a damaged model file; task="scor" had silently meant the potential."""
    from get_md.errors import ConfigError

    for dtype in ("float16", "half", torch.bfloat16):
        with pytest.raises(ConfigError, match=r"GETCalculator: dtype (float16|bfloat16) is not supported"):
            runtime.load(tiny_get(), dtype=dtype, who="GETCalculator")
        with pytest.raises(ConfigError, match=r"load_model: dtype .* is not supported"):
            runtime.load_model("get-xtb-organic", dtype=dtype)
    assert runtime.model_dtype("double") is torch.float64
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="create_force: device 'cuda': CUDA is not available"):
        runtime.load("get-xtb-organic", device="cuda", who="create_force")
    with pytest.raises(ConfigError, match="load_model: device 'cuda:0': CUDA is not available"):
        runtime.load_model("get-xtb-organic", device="cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device 'cuda:3': this machine has 1 CUDA device\(s\)"):
        runtime.check_device("cuda:3")
    with pytest.raises(ConfigError, match="task must be 'energy' or 'score', got 'scor'"):
        runtime.load_model(None, task="scor")


def test_model_names_near_misses_wrong_types_and_missing_files():
    from get_md.errors import ModelFileError, ZooError

    for typo, name in (("get-afinity", "get-affinity"), ("GET-XTB-ORGANIC", "get-xtb-organic")):
        with pytest.raises(ZooError, match=f"unknown model '{typo}' \\(did you mean '{name}'\\?\\)"):
            runtime.load(typo)
    with pytest.raises(ZooError, match="unknown model 'nosuch'; shipped"):
        runtime.resolve_model_path("nosuch")
    with pytest.raises(ZooError, match="model name is empty"):
        runtime.resolve_model_path("")
    with pytest.raises(TypeError, match="model must be a shipped model name or a model file path, got int"):
        runtime.load_model(3)
    with pytest.raises(ModelFileError, match="nosuch/model.pt: model file not found"):  # was a bare FileNotFoundError
        runtime.verified_metadata("nosuch/model.pt")


def test_a_model_call_out_of_memory_is_one_line_naming_the_model_and_the_size():
    """A dense 8,000-atom carbon grid in the ASE calculator (0.6 Å spacing: 1.5 GB asked in one allocation) had
    ended in a page of TorchScript traceback; other errors of a model pass unchanged."""
    from get_md.errors import ModelRunError

    class Failing(torch.nn.Module):
        family, task = "get", "energy"

        def __init__(self, message):
            super().__init__()
            self.message = message

        def forward(self, *inputs):
            raise RuntimeError(self.message)

    graph = _graph(ethanol())
    page = ("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript code:\n"
            "  ...\nRuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 1502494720 bytes.")
    with pytest.raises(ModelRunError, match=r"model <in-memory Failing> ran out of memory on 9 atoms \(cpu\): "
                                            r"RuntimeError: .*allocate 1502494720 bytes; evaluate fewer") as info:
        runtime.load(Failing(page)).run_graph(graph)
    assert "\n" not in str(info.value) and info.value.__suppress_context__
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        runtime.load(Failing("shape mismatch")).run_graph(graph)
