"""Named model inputs (``get_md.model_inputs``) match every model family's forward
arguments and the ``inputs`` list of exported metadata, so the two cannot drift."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from get_md.workflows.nbody import batch_inputs, build_nbody_model

from get_md import export, model_inputs
from get_md.graph import TENSOR_FIELDS, MolecularGraph
from get_md.model_inputs import ModelInputs, VectorInputs
from get_md.models import build_model
from get_md.models.ensemble import build_ensemble

TINY_GET = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)
TINY_GEOMFORMER = dict(d_model=16, n_layers=1, n_heads=2, n_rbf=8)
ZOO = Path(export.__file__).parent / "zoo"


def _arg_names(fn) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def _schema_names(method) -> tuple[str, ...]:
    return tuple(a.name for a in method.schema.arguments[1:])  # [0] is self


FAMILIES = {
    "get": lambda: build_model("get", **TINY_GET),
    "geomformer": lambda: build_model("geomformer", mode="dense", **TINY_GEOMFORMER),
    "ensemble": lambda: build_ensemble("get", members=2, mode="score", task="score", **TINY_GET),
    "nbody-geomformer": lambda: build_nbody_model("geomformer", **TINY_GEOMFORMER),
    "nbody-get": lambda: build_nbody_model("get", **TINY_GET),
}


def test_field_names_are_the_key_constants():
    keys = (model_inputs.POSITIONS, model_inputs.ATOMIC_NUMBERS, model_inputs.BLOCK_IDS,
            model_inputs.ATOM_POSITIONS, model_inputs.BLOCK_TYPES, model_inputs.SEGMENT_IDS,
            model_inputs.BATCH_IDS, model_inputs.CELL, model_inputs.PBC)
    assert ModelInputs._fields == keys == model_inputs.INPUT_NAMES == TENSOR_FIELDS
    assert VectorInputs._fields == (keys[0], model_inputs.VELOCITIES, model_inputs.CHARGES, *keys[1:])
    assert tuple(export.INPUT_NAMES) == ModelInputs._fields


def test_graph_inputs_are_named_and_unpack_in_order():
    g = MolecularGraph.from_atoms(torch.randn(3, 3), torch.tensor([8, 1, 1]))
    inp = g.inputs()
    assert isinstance(inp, ModelInputs) and isinstance(inp, tuple)
    for name, t in zip(ModelInputs._fields, inp, strict=True):
        assert t is getattr(g, name)
    vel, q = torch.randn(3, 3), torch.zeros(3)
    vec = inp.with_vectors(vel, q)
    assert vec.velocities is vel and vec.charges is q and vec.cell is g.cell
    assert vec.model_inputs() == inp
    assert inp.graph_tensors() == tuple(inp)[1:]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_forward_arguments_equal_model_inputs(family, tmp_path):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    assert _arg_names(model.forward) == ModelInputs._fields
    if hasattr(model, "forward_with_vectors"):
        assert _arg_names(model.forward_with_vectors) == VectorInputs._fields
    if hasattr(model, "environment_cache"):
        assert _arg_names(model.environment_cache) == ModelInputs._fields
        assert _arg_names(model.forward_in_environment)[:len(ModelInputs._fields)] == ModelInputs._fields
    meta = export.save(model, tmp_path / "m.pt", {"description": family})
    assert meta["inputs"] == list(ModelInputs._fields)
    assert export.read_metadata(tmp_path / "m.pt")["inputs"] == list(ModelInputs._fields)
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    assert _schema_names(scripted.forward) == ModelInputs._fields
    if hasattr(model, "forward_with_vectors"):
        assert _schema_names(scripted.forward_with_vectors) == VectorInputs._fields


@pytest.mark.parametrize("path", sorted(ZOO.glob("*.pt")), ids=lambda p: p.stem)
def test_shipped_models_take_model_inputs(path):
    assert export.read_metadata(path)["inputs"] == list(ModelInputs._fields)
    scripted = torch.jit.load(str(path))
    assert _schema_names(scripted.forward) == ModelInputs._fields
    if hasattr(scripted, "forward_with_vectors"):
        assert _schema_names(scripted.forward_with_vectors) == VectorInputs._fields


def test_nbody_batch_inputs_are_vector_inputs():
    inp = batch_inputs(torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.ones(2, 4))
    assert isinstance(inp, VectorInputs)
    assert inp.positions.shape == (8, 3) and inp.charges.shape == (8,) and inp.cell.shape == (2, 3, 3)
