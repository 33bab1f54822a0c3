"""GET against the shared model suite (get_md/testing/model_suite.py), plus GET-specific checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from get_md.graph import MolecularGraph
from get_md.models import build_model
from get_md.testing.model_suite import ModelSuite, assert_close, random_rotation

CUTOFF = 3.0
DATA = Path(__file__).parent / "data"


def tiny(task: str, mode: str, dtype: torch.dtype = torch.float64, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    config = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=2, d_edge=4, cutoff=CUTOFF,
                  mode=mode, task=task, k_neighbors=3, sparse_k=2, input_vectors=(task == "vectors"))
    config.update(kw)
    model = build_model("get", **config).to(dtype)
    with torch.no_grad():  # move every weight off its initial value so no path is trivially zero
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


class TestGET(ModelSuite):
    family = "get"
    modes = ("potential", "score")
    potential_modes = ("potential",)
    cutoff = CUTOFF
    input_vectors = True

    def make_model(self, task: str, mode: str, dtype: torch.dtype) -> torch.nn.Module:
        return tiny(task, mode, dtype)


@pytest.fixture(scope="module")
def pocket_complex():
    """A real receptor pocket (residue blocks) with a docked ligand (atom blocks)."""
    from get_md.build import from_pdb, from_sdf, pocket_complex

    receptor = from_pdb(DATA / "prolif" / "rec.pdb")
    ligand = from_sdf(DATA / "prolif" / "vina_output.sdf")[0]
    return pocket_complex(receptor, ligand, 6.0).to(dtype=torch.float64)


@pytest.mark.parametrize("mode,task", [("score", "score"), ("potential", "energy")])
def test_residue_blocks_are_invariant(pocket_complex, mode, task):
    """Multi-atom blocks (residues) with a ligand: outputs invariant under O(3) and translation."""
    torch.set_num_threads(1)
    model = tiny(task, mode, cutoff=4.0).eval()
    g = pocket_complex
    out = model(*g.inputs())
    rot = random_rotation(torch.Generator().manual_seed(3), reflect=True)
    g2 = g.with_positions(g.positions @ rot.T + torch.tensor([3.0, -2.0, 7.0], dtype=torch.float64))
    out2 = model(*g2.inputs())
    key = "score" if task == "score" else "energy"
    assert_close(out2[key], out[key], torch.float64, f"{mode} {key} invariance")
    if task == "energy":
        assert_close(out2["forces"], out["forces"] @ rot.T, torch.float64, "force equivariance")
    else:
        assert_close(out2["block_scores"].sum(), out["score"].sum(), torch.float64, "block scores sum")


def _knn_neighbours(model, g) -> dict:
    """The score-mode block graph the model builds for ``g``: receiving block -> {(sending
    block, edge type)}."""
    from get_md.nn.neighbors import knn_block_edges

    edges, etype = knn_block_edges(g.positions, g.block_ids, g.batch_ids, g.segment_ids,
                                   model.k_neighbors, model.knn_radius)
    out: dict = {b: set() for b in range(g.num_blocks)}
    for r, c, t in zip(edges[0].tolist(), edges[1].tolist(), etype.tolist(), strict=True):
        out[r].add((c, t))
    return out


def _move_block(g, block: int, to: torch.Tensor):
    """``g`` with ``block``'s atoms translated so that their centroid is at ``to``."""
    pos = g.positions.clone()
    atoms = g.block_ids == block
    pos[atoms] += to - pos[atoms].mean(0)
    return g.with_positions(pos)


def test_score_mode_uses_k_nearest_blocks_only(pocket_complex):
    """Moving a block far beyond every k-NN neighbourhood changes nothing for the others'
    graph except that blocks which had it among their k nearest take their next nearest
    instead; moved next to another block, it enters that block's neighbourhood."""
    model = tiny("score", "score", cutoff=4.0).eval()
    g = pocket_complex
    k = model.k_neighbors
    before = _knn_neighbours(model, g)
    moved = 0  # a receptor block some other block counts among its k nearest
    had = {r for r, nb in before.items() if r != moved and any(c == moved for c, _ in nb)}
    assert had, "block 0 is nobody's neighbour: the test would prove nothing"

    far = _move_block(g, moved, g.positions.mean(0) + torch.tensor([0.0, 0.0, 10.0 * model.knn_radius],
                                                                     dtype=g.positions.dtype))
    after = _knn_neighbours(model, far)
    assert after[moved] == {(moved, 0)}, "a block beyond the search radius keeps only its self edge"
    for r in range(g.num_blocks):
        if r == moved:
            continue
        if r not in had:
            assert after[r] == before[r], f"block {r}'s neighbours changed though block {moved} was not one"
        else:
            kept = {(c, t) for c, t in before[r] if c != moved}
            assert kept <= after[r] and all(c != moved for c, _ in after[r])
            t_lost = next(t for c, t in before[r] if c == moved)
            n_type = sum(1 for _, t in after[r] if t == t_lost)
            assert n_type <= k and len(after[r]) >= len(kept)
    assert torch.isfinite(model(*far.inputs())["score"]).all()

    # moved next to a ligand block that did not have it, it becomes one of its neighbours
    lig = int(torch.nonzero(g.segment_ids == 1)[0])
    assert all(c != moved for c, _ in before[lig])
    target = g.positions[g.block_ids == lig].mean(0) + torch.tensor([1.5, 0.0, 0.0], dtype=g.positions.dtype)
    near = _knn_neighbours(model, _move_block(g, moved, target))
    assert (moved, 1) in near[lig], "a block next to the ligand atom is not among its k nearest"
    assert near[lig] != before[lig]


def test_potential_segments_flag(pocket_complex):
    """A potential ignores segment labels unless built with uses_segments=True; a score
    model reads them by default; the flag survives TorchScript and the config."""
    g = pocket_complex.as_atom_blocks()
    flat = dataclasses.replace(g, segment_ids=torch.zeros_like(g.segment_ids))
    default = tiny("energy", "potential", cutoff=4.0).eval()
    assert default.uses_segments is False and default.config["uses_segments"] is False
    scripted = torch.jit.script(default)
    for m in (default, scripted):
        assert torch.equal(m(*g.inputs())["energies"], m(*flat.inputs())["energies"])
    with_segments = tiny("energy", "potential", cutoff=4.0, uses_segments=True).eval()
    assert with_segments.config["uses_segments"] is True
    e1 = with_segments(*g.inputs())["energy"].detach()
    e0 = with_segments(*flat.inputs())["energy"].detach()
    assert float((e1 - e0).abs()) > 1e-6, "uses_segments=True: the inter-segment edge type has no effect"
    score = tiny("score", "score", cutoff=4.0).eval()
    assert score.uses_segments is True
    rebuilt = build_model("get", **score.config)
    assert rebuilt.uses_segments is True


def test_isolated_atoms_get_their_isolated_energy():
    """No neighbour within the cutoff (one atom; two atoms 20 Å apart): eager and TorchScript
    run, forces are exactly zero, and each atom's energy is that of its state without any
    message (embedding, the layers' residual bias, norms and feed-forward, head)."""
    model = tiny("energy", "potential").eval()
    g = MolecularGraph.from_atoms(torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]], dtype=torch.float64),
                                  torch.tensor([6, 8]))
    with torch.no_grad():  # the no-message state, by hand
        H = model._embed(g.atomic_numbers, g.block_ids, g.atom_positions, g.block_types)
        Z = g.positions.unsqueeze(1)
        enc = model.encoder
        for layer, norm0, ffn, norm1 in zip(enc.layers, enc.norms0, enc.ffns, enc.norms1, strict=True):
            H = norm0.layernorm(H + layer.node_out_linear(torch.zeros_like(H)))
            H, _ = ffn(H, Z, g.block_ids, g.num_blocks)
            H = norm1.layernorm(H)
        expected = model._atom_energies(H, g.atomic_numbers)
    for m in (model, torch.jit.script(model)):
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                out = m(*g.inputs())
            assert torch.equal(out["forces"], torch.zeros(2, 3, dtype=torch.float64))
            assert_close(out["energies"].detach(), expected, torch.float64, "isolated atom energies")
            one = m(*MolecularGraph.from_atoms(g.positions[:1], g.atomic_numbers[:1]).inputs())
            assert_close(one["energy"].detach(), expected[:1], torch.float64, "one atom")


def test_bad_config():
    with pytest.raises(ValueError, match="mode"):
        build_model("get", mode="knn")
    with pytest.raises(ValueError, match="task"):
        build_model("get", task="charges")
    with pytest.raises(ValueError, match="divisible"):
        build_model("get", d_hidden=10, n_head=4)


@pytest.mark.parametrize("mode,task", [("score", "score"), ("potential", "energy"), ("potential", "vectors")])
def test_chunked_inference_equals_unchunked(pocket_complex, mode, task):
    """Without autograd the pair/group MLPs run in chunks (GETLayer._rows); same outputs."""
    torch.set_num_threads(1)
    model = tiny(task, mode, cutoff=4.0, compute_forces=False).eval()
    g = pocket_complex.as_atom_blocks() if mode == "potential" else pocket_complex
    args = g.inputs()
    if task == "vectors":
        args = args.with_vectors(torch.randn_like(g.positions), torch.randn(g.num_atoms, dtype=g.positions.dtype))
    run = model.forward_with_vectors if task == "vectors" else model
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.chunk_rows = layer.stream_rows = 0
        ref = run(*args)
        for layer in model.encoder.layers:
            layer.chunk_rows = layer.stream_rows = 37  # many chunks, a ragged last one
            layer.pair_chunk_numbers = 53 * layer.d_radial  # pair MLPs in 53-row chunks
        got = run(*args)
        scripted = torch.jit.script(model)
        got_script = (scripted.forward_with_vectors if task == "vectors" else scripted)(*args)
    assert set(got) == set(ref)
    for k in ref:
        assert_close(got[k], ref[k], torch.float64, f"chunked {k}")
        assert_close(got_script[k], ref[k], torch.float64, f"chunked TorchScript {k}")


def test_singleton_pairs_shortcut_changes_nothing(pocket_complex):
    """Atom blocks in potential mode: every block edge is one atom pair and GETLayer
    reduces over single members elementwise; energies and forces equal the general path."""
    torch.set_num_threads(1)
    g = pocket_complex.as_atom_blocks()
    for task in ("energy", "vectors"):
        model = tiny(task, "potential", cutoff=4.0).eval()
        args = g.inputs()
        if task == "vectors":
            args = args.with_vectors(torch.randn_like(g.positions),
                                     torch.randn(g.num_atoms, dtype=g.positions.dtype))
        run = model.forward_with_vectors if task == "vectors" else model
        pairs = model._potential_pairs(g.positions, g.block_ids, g.segment_ids, g.batch_ids[g.block_ids],
                                       g.cell, g.pbc)
        assert pairs[-1] is True
        got = run(*args)
        model.compute_forces = False
        with torch.no_grad():  # the chunked inference path (GETLayer._singleton_inference)
            for layer in model.encoder.layers:
                layer.stream_rows = 53  # many chunks, a ragged last one
            got_nograd = run(*args)
            model.singleton_shortcut = False
            ref_nograd = run(*args)
        model.compute_forces = True
        ref = run(*args)
        assert set(got) == set(ref)
        for k in ref:
            assert_close(got[k], ref[k], torch.float64, f"singleton shortcut {task} {k}")
        for k in ref_nograd:
            assert_close(got_nograd[k], ref_nograd[k], torch.float64, f"singleton inference {task} {k}")
            assert_close(got_nograd[k], ref[k], torch.float64, f"singleton inference vs autograd {task} {k}")
    # residue blocks never take it
    pairs = model._potential_pairs(pocket_complex.positions, pocket_complex.block_ids, pocket_complex.segment_ids,
                                   pocket_complex.batch_ids[pocket_complex.block_ids], pocket_complex.cell,
                                   pocket_complex.pbc)
    assert pairs[-1] is False


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_in_environment_equals_forward(dtype):
    """Poses in one pocket: reusing the pocket's states and pair terms
    (GET.environment_cache / forward_in_environment) gives forward()'s energies, eager
    and TorchScript, for complexes and free ligands batched together."""
    from get_md.build import from_pdb, from_sdf, make_complex, select_pocket
    from get_md.graph import batch_graphs

    torch.set_num_threads(1)
    receptor = from_pdb(DATA / "prolif" / "rec.pdb")
    poses = from_sdf(DATA / "prolif" / "vina_output.sdf")[:3]
    pocket = select_pocket(receptor, poses[0], 8.0)
    graphs = [make_complex(pocket, p) for p in poses] + poses[:2]
    batch = batch_graphs(graphs).as_atom_blocks().to(dtype=dtype)
    env_index = torch.cat([torch.cat([torch.arange(pocket.num_atoms), torch.full((p.num_atoms,), -1)])
                           for p in poses] + [torch.full((p.num_atoms,), -1) for p in poses[:2]])
    model = tiny("energy", "potential", dtype).eval()   # 2 layers, cutoff 3 Å
    model.compute_forces = False
    # some pocket atoms are beyond the model's reach of every pose: they keep cached states
    lig_pos = torch.cat([p.positions for p in poses]).to(pocket.positions.dtype)
    assert (torch.cdist(pocket.positions, lig_pos).min(dim=1).values > 2 * CUTOFF).any()
    env_inputs = pocket.as_atom_blocks().to(dtype=dtype).inputs()
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.stream_rows = 53  # many chunks, a ragged last one
        for m in (model, torch.jit.script(model)):
            cache = m.environment_cache(*env_inputs)
            ref = m(*batch.inputs())
            got = m.forward_in_environment(*batch.inputs(), env_index, cache)
            assert_close(got["energy"], ref["energy"], dtype, "energy in environment")
            assert_close(got["energies"], ref["energies"], dtype, "energies in environment")
            moved = batch.positions.clone()
            moved[0, 0] += 0.01                           # a pocket atom not where the cache has it
            args = batch.inputs()._replace(positions=moved)
            with pytest.raises((RuntimeError, torch.jit.Error), match="not where the cache"):
                m.forward_in_environment(*args, env_index, cache)
            part = env_index.clone()
            part[5] = -1                                  # one pocket atom not declared
            with pytest.raises((RuntimeError, torch.jit.Error), match="part of an environment"):
                m.forward_in_environment(*batch.inputs(), part, cache)
    # with forces (or autograd) nothing is reused: plain forward
    model.compute_forces = True
    got = model.forward_in_environment(*batch.inputs(), env_index, cache)
    ref = model(*batch.inputs())
    assert set(got) == set(ref) and "forces" in got
    assert_close(got["forces"], ref["forces"], dtype, "forces in environment (fallback)")


def test_forward_in_environment_several_environments():
    """A batch of environments (a pocket in two places, as in trajectory frames): each
    structure reuses its own; a structure mixing two environments is refused."""
    from get_md.build import from_pdb, from_sdf, make_complex, select_pocket
    from get_md.graph import batch_graphs

    torch.set_num_threads(1)
    receptor = from_pdb(DATA / "prolif" / "rec.pdb")
    pose = from_sdf(DATA / "prolif" / "vina_output.sdf")[0].to(dtype=torch.float64)
    pocket = select_pocket(receptor, pose, 6.0).to(dtype=torch.float64)
    shift = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # a second "frame"
    pocket_b, pose_b = pocket.with_positions(pocket.positions + shift), pose.with_positions(pose.positions + shift)
    n = pocket.num_atoms
    envs = batch_graphs([pocket, pocket_b]).as_atom_blocks()
    batch = batch_graphs([make_complex(pocket_b, pose_b), make_complex(pocket, pose), pose]).as_atom_blocks()
    lig = torch.full((pose.num_atoms,), -1)
    env_index = torch.cat([torch.arange(n) + n, lig, torch.arange(n), lig, lig])
    model = tiny("energy", "potential").eval()
    model.compute_forces = False
    with torch.no_grad():
        cache = model.environment_cache(*envs.inputs())
        energies = model(*envs.inputs())["energies"]
        assert_close(cache[2], energies, torch.float64, "environment energies")
        ref = model(*batch.inputs())
        got = model.forward_in_environment(*batch.inputs(), env_index, cache)
        assert_close(got["energy"], ref["energy"], torch.float64, "energy, two environments")
        mixed = env_index.clone()
        mixed[:5] = torch.arange(5)                    # first atoms from the other environment
        with pytest.raises(RuntimeError, match="part of an environment"):
            model.forward_in_environment(*batch.inputs(), mixed, cache)
