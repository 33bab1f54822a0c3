"""pt2 (torch.export) model files: round trips against TorchScript for every model family
the model suite covers, dynamic sizes, metadata and digest, damaged files, and the
runtime's torch.compile option with its fallback (issue 16)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from get_md import export, runtime
from get_md.errors import ModelFileError
from get_md.graph import MolecularGraph, batch_graphs
from get_md.models import build_model
from get_md.testing.model_suite import assert_close, random_molecule

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _get(task: str, mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=2, d_edge=4,
                        cutoff=3.0, mode=mode, task=task)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _geomformer(task: str, mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("geomformer", d_model=8, n_layers=2, n_heads=2, n_rbf=6, cutoff=3.0, mode=mode,
                        task=task, elements=[1, 6, 7, 8])
    with torch.no_grad():
        model.atom_ref.weight.normal_()
    return model.eval()


def _nbody() -> torch.nn.Module:
    from get_md.workflows.nbody import build_nbody_model

    torch.manual_seed(0)
    return build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8, mode="dense").eval()


CASES = {
    "get-potential-energy": lambda: _get("energy", "potential"),
    "get-potential-vectors": lambda: _get("vectors", "potential"),
    "get-score": lambda: _get("score", "score"),
    "geomformer-radius-energy": lambda: _geomformer("energy", "radius"),
    "geomformer-dense-score": lambda: _geomformer("score", "dense"),
    "nbody": _nbody,
}
NBODY_META = {"builder": "get_md.workflows.nbody:build_nbody_model (family, **config)"}


def _residue_blocks(g: MolecularGraph, size: int = 3) -> MolecularGraph:
    """The same atoms in blocks of ``size`` (score models see residues), last block a ligand."""
    n = g.num_atoms
    block_ids = torch.arange(n) // size
    nb = int(block_ids[-1]) + 1
    return MolecularGraph(positions=g.positions, atomic_numbers=g.atomic_numbers, block_ids=block_ids,
                          atom_positions=g.atom_positions, block_types=g.block_types[::size].clone(),
                          segment_ids=(torch.arange(nb) == nb - 1).long(), batch_ids=torch.zeros(nb, dtype=torch.long),
                          cell=g.cell, pbc=g.pbc)


def _structures(name: str, sizes, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if name == "nbody":
        from get_md.workflows.nbody import PARTICLE_Z

        elements = (PARTICLE_Z,)
    else:
        elements = (1, 6, 7, 8)
    graphs = [random_molecule(gen, n, torch.float32, elements=elements) for n in sizes]
    if name.endswith("score"):
        graphs = [_residue_blocks(g) for g in graphs]
    return batch_graphs(graphs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each case saved as TorchScript and pt2 (float32), exported once per module."""
    out = {}
    root = tmp_path_factory.mktemp("pt2")
    for name, make in CASES.items():
        model = make()
        meta = dict(NBODY_META) if name == "nbody" else {}
        ts = export.save(model, root / f"{name}.pt", {**meta, "dataset": "unit-test"})
        p2 = export.save(model, root / f"{name}.pt2", {**meta, "dataset": "unit-test"}, format="pt2")
        out[name] = (model, root / f"{name}.pt", root / f"{name}.pt2", ts, p2)
    return out


def _call(module, name: str, g: MolecularGraph):
    if name == "nbody":
        gen = torch.Generator().manual_seed(3)
        vel = torch.randn(g.num_atoms, 3, generator=gen)
        q = torch.randint(0, 2, (g.num_atoms,), generator=gen).float() * 2 - 1
        out = module.forward_with_vectors(g.positions, vel, q, *g.inputs()[1:])
    else:
        out = module(*g.inputs())
    return {k: v.detach() for k, v in out.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_pt2_matches_torchscript(files, name):
    """Same outputs as the TorchScript file to 1e-5 (float32), on atom counts other than the
    export example's (9 + 13), in batches, and up to 150 atoms."""
    _, ts_path, pt2_path, ts_meta, pt2_meta = files[name]
    ts, _ = export.load(ts_path)
    p2, meta = export.load(pt2_path)
    assert meta["format"] == "pt2" and meta["family"] == ts_meta["family"] and meta["task"] == ts_meta["task"]
    assert meta["weights_sha256"] == ts_meta["weights_sha256"]  # same weights, same digest
    for k in ("config", "cutoff", "elements", "inputs", "outputs", "training"):
        assert meta[k] == ts_meta[k], k
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these sizes run in the program, not the eager fallback
        for sizes, seed in (((5,), 1), ((17, 6, 11), 2), ((150,), 3)):
            g = _structures(name, sizes, seed)
            a, b = _call(p2, name, g), _call(ts, name, g)
            assert set(a) == set(b)
            for k in b:
                assert_close(a[k], b[k], torch.float32, f"{name} {sizes}: {k}")


def test_pt2_periodic_forces_and_stress(files):
    """A periodic cell: forces and stress (autograd around the program) as TorchScript's."""
    _, ts_path, pt2_path, _, _ = files["get-potential-energy"]
    ts, _ = export.load(ts_path)
    p2, _ = export.load(pt2_path)
    gen = torch.Generator().manual_seed(19)
    mol = random_molecule(gen, 6, torch.float32)
    cell = torch.tensor([[4.2, 0.0, 0.0], [0.6, 4.5, 0.0], [0.3, -0.4, 4.8]])
    g = MolecularGraph.from_atoms(mol.positions, mol.atomic_numbers, cell=cell, pbc=torch.tensor([True] * 3))
    a, b = _call(p2, "get", g), _call(ts, "get", g)
    assert "stress" in a and set(a) == set(b)
    for k in b:
        assert_close(a[k], b[k], torch.float32, f"periodic: {k}")


def test_pt2_small_inputs_run_eagerly(files):
    """One atom (no pair) is outside the program's shapes: the model runs eagerly, same outputs."""
    _, ts_path, pt2_path, _, _ = files["get-potential-energy"]
    ts, _ = export.load(ts_path)
    p2, _ = export.load(pt2_path)
    g = MolecularGraph.from_atoms(torch.zeros(1, 3), torch.tensor([6]))
    with pytest.warns(UserWarning, match="eagerly"):
        a = _call(p2, "get", g)
    b = _call(ts, "get", g)
    for k in b:
        assert_close(a[k], b[k], torch.float32, f"one atom: {k}")


def test_pt2_through_runtime(files):
    """runtime.load / resolve_model_path take a .pt2 file like a TorchScript one."""
    model, _, pt2_path, _, _ = files["get-potential-energy"]
    assert runtime.resolve_model_path(pt2_path.name).suffix == ".pt2"
    lm = runtime.load(str(pt2_path))
    assert lm.family == "get" and lm.task == "energy" and lm.metadata["format"] == "pt2"
    g = _structures("get", (8,), 4)
    out = lm.run_graph(g)
    ref = model(*g.inputs())
    assert_close(out["forces"], ref["forces"].detach(), torch.float32, "runtime forces")
    with pytest.raises(ModelFileError, match="dtype"):
        runtime.load(str(pt2_path), dtype="float64")


def test_pt2_in_another_dtype_says_which_dtype_to_ask_for(files):
    """A float64 pt2 file loaded with the engines' default float32 had been told only to
    "export it again in that dtype"; asking for the file's dtype is the quicker way."""
    _, _, pt2_path, _, _ = files["get-potential-energy"]
    with pytest.raises(ModelFileError, match=r"exported in \(float32\), not float64 .*load it with "
                                             r"dtype='float32' \(--dtype float32\), or export it again in float64"):
        runtime.load(str(pt2_path), dtype="float64")
    assert export.read_metadata(pt2_path)["format"] == "pt2"


def test_corrupt_pt2_names_the_file(files, tmp_path):
    _, _, pt2_path, _, _ = files["get-potential-energy"]
    data = bytearray(pt2_path.read_bytes())
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelFileError, match="truncated.pt2"):
        export.load(truncated)
    # flip bytes in the middle of the weights: the zip checksum or the digest catches it
    flipped = tmp_path / "flipped.pt2"
    mid = len(data) // 3
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    flipped.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="flipped.pt2"):
        export.load(flipped)
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="garbage.pt2"):
        export.load(garbage)


def _edited_pt2(good: Path, out: Path, **changes) -> Path:
    """``good`` with fields of its metadata.json replaced; the weights (and digest) untouched."""
    import json
    import zipfile

    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/extra/metadata.json"):
                body = json.dumps({**json.loads(body), **changes}).encode()
            dst.writestr(info, body)
    return out


def test_pt2_with_edited_task_is_refused(files, tmp_path):
    """A pt2 energy model relabelled ``score`` in metadata.json had loaded and verified (its
    task came from the metadata): the program's own outputs say what it computes."""
    _, _, pt2_path, _, _ = files["get-potential-energy"]
    edited = _edited_pt2(pt2_path, tmp_path / "relabelled.pt2", task="score",
                         units={"length": "angstrom", "score": "pK"})
    with pytest.raises(ModelFileError, match="relabelled.pt2: metadata.json says task 'score' but the "
                                             "model computes 'energy'"):
        export.load(edited)
    for name in ("get-score", "get-potential-vectors"):  # the real tasks still load
        assert export.load(files[name][2])[0].task == name.split("-")[-1]


def test_pt2_with_edited_cutoff_is_refused(files, tmp_path):
    """A pt2 file's cutoff edited in metadata.json had loaded (the module took its cutoff from
    the metadata): the cutoff its neighbour lists are built with, the config's, says otherwise."""
    _, _, pt2_path, _, p2 = files["get-potential-energy"]
    edited = _edited_pt2(pt2_path, tmp_path / "cutoff.pt2", cutoff=p2["cutoff"] + 2.0)
    with pytest.raises(ModelFileError, match=f"cutoff.pt2: metadata.json says cutoff {p2['cutoff'] + 2.0:g} Å but "
                                             f"the model's own is {p2['cutoff']:g} Å"):
        export.load(edited)


def test_pt2_with_edited_family_or_config_names_the_file(files, tmp_path):
    """The model a pt2 file runs beside its program is built from metadata.json's family and
    config: an edited family had given a bare TypeError, an edited size a bare state-dict error."""
    _, _, pt2_path, _, p2 = files["get-potential-energy"]
    cases = {"family.pt2": {"family": "geomformer"},
             "width.pt2": {"config": {**p2["config"], "d_hidden": 32}}}
    for name, change in cases.items():
        edited = _edited_pt2(pt2_path, tmp_path / name, **change)
        with pytest.raises(ModelFileError, match=f"{name}: metadata.json family .* and config do not build the "
                                                 "model the program was exported from"):
            export.load(edited)


def test_pt2_cut_at_its_end_is_named_truncated(files, tmp_path, capsys):
    """A pt2 file that lost its last bytes had been read as the zip of its sample inputs
    (stored inside it): "no metadata.json ...; not a get_md model file"."""
    from get_md.cli import main

    _, _, pt2_path, _, _ = files["get-potential-energy"]
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(pt2_path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="cut.pt2: model file is truncated or damaged"):
        export.read_metadata(cut)
    assert main(["info", str(cut), "--no-verify"]) == 2
    assert "truncated" in capsys.readouterr().err


def test_rescripted_pt2_file_is_a_loadable_torchscript_file(files, tmp_path):
    """``export.rescript`` of a pt2 file had carried ``"format": "pt2"`` into the TorchScript
    file it wrote, which every load then read as a pt2 program and refused."""
    _, _, pt2_path, _, p2 = files["get-potential-energy"]
    written = export.rescript(pt2_path, tmp_path / "again.pt")
    assert "format" not in written and written["weights_sha256"] == p2["weights_sha256"]
    module, _ = export.load(tmp_path / "again.pt")
    assert isinstance(module, torch.jit.ScriptModule)
    # in place (or to another .pt2 name) the file stays a pt2 program: the format follows the name
    import shutil

    shutil.copy(pt2_path, tmp_path / "same.pt2")
    export.rescript(tmp_path / "same.pt2")
    module, meta = export.load(tmp_path / "same.pt2")
    assert meta["format"] == "pt2" and not isinstance(module, torch.jit.ScriptModule)


def test_cli_export_rescripts_a_pt2_file(files, tmp_path, capsys):
    """``get-md export model.pt2 model.pt`` had refused the pt2 file as "not a torch
    checkpoint (zip without torch records)": the checkpoint checks ran before the model-file test."""
    from get_md.cli import main

    _, _, pt2_path, _, p2 = files["get-potential-energy"]
    assert main(["export", str(pt2_path), str(tmp_path / "model.pt")]) == 0
    assert "re-scripted" in capsys.readouterr().out
    assert export.load(tmp_path / "model.pt")[1]["weights_sha256"] == p2["weights_sha256"]


def test_cli_export_to_a_pt2_name_writes_a_pt2_file(files, tmp_path, capsys):
    """``get-md export ... OUT.pt2`` had written a TorchScript file under the pt2 name."""
    from get_md.cli import main

    _, ts_path, _, ts, _ = files["get-potential-energy"]
    assert main(["export", str(ts_path), str(tmp_path / "model.pt2")]) == 0
    capsys.readouterr()
    module, meta = export.load(tmp_path / "model.pt2")
    assert meta["format"] == "pt2" and not isinstance(module, torch.jit.ScriptModule)
    assert meta["weights_sha256"] == ts["weights_sha256"]


def test_pt2_refuses_what_it_cannot_export(tmp_path):
    model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, mode="score",
                        task="score", heavy_atoms_only=True)
    with pytest.raises(ValueError, match="heavy_atoms_only"):
        export.save(model, tmp_path / "x.pt2", format="pt2")
    with pytest.raises(ValueError, match="format"):
        export.save(model, tmp_path / "x.pt", format="onnx")
    assert not (tmp_path / "x.pt2").exists()


def test_every_model_module_calling_int_keeps_sizes_symbolic():
    """``int(tensor)`` in a model module fixes a size to the example's while exporting
    unless the module is in ``export_pt2._SYMBOLIC_INT_MODULES``: a module split out of
    another (issue 15) must join the list."""
    import ast
    import pkgutil

    import get_md.models
    from get_md import export_pt2

    build_time_only = {"get_md.models.ensemble"}  # int(members) when building, not in forward
    calls_int = set()
    for info in pkgutil.iter_modules(get_md.models.__path__):
        name = f"get_md.models.{info.name}"
        tree = ast.parse(Path(info.module_finder.path, f"{info.name}.py").read_text())
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "int"
               for n in ast.walk(tree)):
            calls_int.add(name)
    assert "get_md.models.get_attention" in calls_int
    assert calls_int - build_time_only <= set(export_pt2._SYMBOLIC_INT_MODULES)


# ----------------------------------------------------------------------------- torch.compile
def _failing_compile(fn, **kwargs):
    def broken(*args, **kw):
        raise RuntimeError("simulated: no C++ compiler\nsecond line")

    return broken


def test_compile_falls_back_with_one_warning(files, monkeypatch):
    """A compilation that fails (simulated) warns once, in one line, and the model runs
    uncompiled with the same outputs: pt2 files, eager modules, and GET_MD_COMPILE."""
    model, ts_path, pt2_path, _, _ = files["get-potential-energy"]
    monkeypatch.setattr(torch, "compile", _failing_compile)
    g = _structures("get", (7,), 5)
    ref = runtime.load(str(ts_path)).run_graph(g)
    for spec in (str(pt2_path), model):
        lm = runtime.load(spec, compile=True)
        with pytest.warns(RuntimeWarning, match="torch.compile failed") as record:
            out = lm.run_graph(g)
        messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and "\n" not in messages[0] and "simulated" in messages[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = lm.run_graph(g)  # no second warning
        for k in ("energy", "forces"):
            assert_close(out[k], ref[k], torch.float32, f"fallback {k}")
            assert_close(again[k], ref[k], torch.float32, f"fallback again {k}")
    monkeypatch.setenv(runtime.COMPILE_ENV, "1")
    module, _ = runtime.load_model(pt2_path)
    assert isinstance(module.runner, runtime._CompiledCall)
    monkeypatch.setenv(runtime.COMPILE_ENV, "0")
    module, _ = runtime.load_model(pt2_path)
    assert module.runner is None


def test_compile_of_torchscript_warns_and_runs(files):
    _, ts_path, _, _, _ = files["get-potential-energy"]
    with pytest.warns(RuntimeWarning, match="TorchScript"):
        lm = runtime.load(str(ts_path), compile=True)
    assert isinstance(lm.module, torch.jit.ScriptModule)


def test_model_errors_are_not_hidden_by_the_fallback(monkeypatch):
    """An error the uncompiled model raises too (bad input) reaches the caller."""
    monkeypatch.setattr(torch, "compile", _failing_compile)
    model = _geomformer("energy", "dense")
    lm = runtime.load(model, compile=True)
    g = MolecularGraph.from_atoms(torch.rand(3, 3), torch.tensor([6, 1, 1]), cell=torch.eye(3) * 5,
                                  pbc=torch.tensor([True] * 3))
    with pytest.warns(RuntimeWarning, match="torch.compile failed"), pytest.raises(RuntimeError, match="periodic"):
        lm.run_graph(g)


def test_ase_calculator_compile_option_reaches_the_runtime(files, monkeypatch):
    """``GETCalculator(model, compile=True)`` compiles through the runtime: with a failing
    compiler (simulated) it warns once and gives the TorchScript file's energy and forces."""
    from ase import Atoms
    from get_md.plugins.ase import GETCalculator

    _, ts_path, pt2_path, _, _ = files["get-potential-energy"]
    monkeypatch.setattr(torch, "compile", _failing_compile)
    atoms = Atoms("CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                    [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])
    ref = atoms.copy()
    ref.calc = GETCalculator(str(ts_path))
    atoms.calc = GETCalculator(str(pt2_path), compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        energy = atoms.get_potential_energy()
    assert energy == pytest.approx(ref.get_potential_energy(), abs=1e-4)
    assert abs(atoms.get_forces() - ref.get_forces()).max() < 1e-4
