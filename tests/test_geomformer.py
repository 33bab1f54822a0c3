"""GeoMFormer against the shared model suite (get_md/testing/model_suite.py), plus its own checks."""

from __future__ import annotations

import pytest
import torch

from get_md.graph import MolecularGraph, batch_graphs
from get_md.models import build_model
from get_md.testing.model_suite import ModelSuite

CUTOFF = 3.0


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(task: str, mode: str, dtype: torch.dtype = torch.float64, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    config = dict(d_model=8, n_layers=2, n_heads=2, n_rbf=6, cutoff=CUTOFF, mode=mode, task=task,
                  elements=[1, 6, 7, 8])
    config.update(kw)
    model = build_model("geomformer", **config).to(dtype)
    # random (not zero) reference energies so that they are exercised too
    with torch.no_grad():
        model.atom_ref.weight.normal_()
    return model


class TestGeoMFormer(ModelSuite):
    family = "geomformer"
    modes = ("dense", "radius")
    potential_modes = ("radius",)
    cutoff = CUTOFF
    input_vectors = True

    def make_model(self, task: str, mode: str, dtype: torch.dtype) -> torch.nn.Module:
        return tiny(task, mode, dtype)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="mode"):
        build_model("geomformer", mode="knn")
    with pytest.raises(ValueError, match="task"):
        build_model("geomformer", task="charges")
    with pytest.raises(ValueError, match="divisible"):
        build_model("geomformer", d_model=10, n_heads=4)


def test_dense_mode_rejects_periodic_cells() -> None:
    model = tiny("energy", "dense")
    g = MolecularGraph.from_atoms(torch.rand(3, 3, dtype=torch.float64), torch.tensor([6, 1, 1]),
                                  cell=torch.eye(3, dtype=torch.float64) * 5, pbc=torch.tensor([True] * 3))
    with pytest.raises(RuntimeError, match="periodic"):
        model(*g.inputs())


def test_force_training_gradients() -> None:
    """In train mode forces keep their graph (create_graph), so a force loss gives finite
    gradients to every stream's parameters, in both modes."""
    g = batch_graphs([MolecularGraph.from_atoms(torch.rand(4, 3, dtype=torch.float64) * 1.5,
                                                torch.tensor([6, 1, 8, 1]))] * 2)
    for mode in ("dense", "radius"):
        model = tiny("energy", mode)
        model.train()
        out = model(*g.inputs())
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(x).all() for x in grads)
        assert model.layers[0].equ_self_attn.qkv.weight.grad.abs().sum() > 0


def test_float32_cpu_default_dtype_runs() -> None:
    model = tiny("vectors", "radius", torch.float32)
    g = MolecularGraph.from_atoms(torch.randn(6, 3), torch.tensor([6, 6, 1, 1, 8, 7]))
    assert model(*g.inputs())["vectors"].dtype == torch.float32
