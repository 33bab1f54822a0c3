"""Neighbour lists and graph construction against brute force."""

import itertools

import pytest
import torch

from get_md.models.get_layers import nearest_in_groups, unit_edges_from_block_edges
from get_md.nn.neighbors import edge_vectors, knn_block_edges, radius_graph


def _brute_pairs(pos, batch, cutoff, cell, pbc, reps=3):
    out = set()
    n = len(pos)
    for i in range(n):
        for j in range(n):
            if batch[i] != batch[j]:
                continue
            g = int(batch[i])
            ranges = [range(-reps, reps + 1) if bool(pbc[g, d]) else [0] for d in range(3)]
            for s in itertools.product(*ranges):
                if i == j and s == (0, 0, 0):
                    continue
                v = pos[j] - pos[i] + torch.tensor(s, dtype=pos.dtype) @ cell[g]
                if float(v.norm()) < cutoff:
                    out.add((i, j, tuple(round(x, 6) for x in v.tolist())))
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_radius_graph_matches_brute_force(periodic):
    torch.manual_seed(1)
    pos = torch.randn(24, 3, dtype=torch.float64) * 3 + 20.0  # unwrapped, far from the box
    batch = torch.tensor([0] * 12 + [1] * 12)
    cell = torch.stack([
        torch.tensor([[4.0, 0, 0], [0.8, 4.5, 0], [0.3, 0.2, 3.9]], dtype=torch.float64),
        torch.zeros(3, 3, dtype=torch.float64),
    ])
    pbc = torch.tensor([[periodic] * 3, [False] * 3])
    c, n, s = radius_graph(pos, batch, 3.0, cell, pbc)
    v = edge_vectors(pos, c, n, s, cell, batch)
    mine = {(int(a), int(b), tuple(round(x, 6) for x in vec.tolist())) for a, b, vec in zip(c, n, v, strict=True)}
    assert len(mine) == c.numel()  # no duplicate edges
    assert mine == _brute_pairs(pos, batch, 3.0, cell, pbc)


def test_radius_graph_scripts_and_handles_single_atom():
    f = torch.jit.script(radius_graph)
    c, n, s = f(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 5.0,
                torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.bool))
    assert c.numel() == 0 and s.shape == (0, 3)


def test_knn_block_edges_matches_brute_force():
    torch.manual_seed(0)
    sizes = [3, 1, 4, 2, 5, 1, 2, 3, 2, 4]
    block_ids = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    pos = torch.randn(len(block_ids), 3, dtype=torch.float64) * 2.5
    batch_ids = torch.tensor([0] * 6 + [1] * 4)
    segment_ids = torch.tensor([0, 0, 0, 1, 1, 0, 0, 1, 1, 1])
    k = 2
    edges, etype = knn_block_edges(pos, block_ids, batch_ids, segment_ids, k, 100.0)
    got = {(int(a), int(b)) for a, b in edges.T}
    expected = set()
    for a in range(len(sizes)):
        for same in (True, False):
            cands = []
            for b in range(len(sizes)):
                if batch_ids[b] != batch_ids[a] or (segment_ids[b] == segment_ids[a]) != same:
                    continue
                d = torch.cdist(pos[block_ids == a], pos[block_ids == b]).min().item()
                cands.append((d, b))
            for _, b in sorted(cands)[:k]:
                expected.add((a, b))
    assert got == expected
    assert bool(((segment_ids[edges[0]] != segment_ids[edges[1]]).long() == etype).all())


@pytest.mark.parametrize("seed", range(4))
def test_knn_block_edges_two_stage_search_is_exact(seed):
    """The two-stage search (all pairs to ``first_radius``, then only the groups with
    fewer than k blocks to ``search_radius``) returns the same edges, in the same order,
    as one search to ``search_radius``: random blocks, three segments, batches, integer
    coordinates for ties, and the TorchScript version too."""
    gen = torch.Generator().manual_seed(seed)
    scripted = torch.jit.script(knn_block_edges)
    for trial in range(40):
        n_blocks = int(torch.randint(1, 50, (1,), generator=gen))
        sizes = torch.randint(1, 7, (n_blocks,), generator=gen)
        block_ids = torch.repeat_interleave(torch.arange(n_blocks), sizes)
        batch_ids = torch.sort(torch.randint(0, 3, (n_blocks,), generator=gen)).values
        segment_ids = torch.randint(0, 3, (n_blocks,), generator=gen)
        pos = torch.rand(len(block_ids), 3, generator=gen, dtype=torch.float64) * (4 + 20 * trial / 40)
        if trial % 3 == 0:
            pos = pos.round()  # exact ties in block distances
        k = int(torch.randint(1, 12, (1,), generator=gen))
        radius = 1.0 + 14.0 * float(torch.rand(1, generator=gen))
        one = knn_block_edges(pos, block_ids, batch_ids, segment_ids, k, radius, radius)
        for first in (1.0, 3.0, 6.0):
            for f in (knn_block_edges, scripted):
                two = f(pos, block_ids, batch_ids, segment_ids, k, radius, first)
                assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1]), (trial, k, radius, first)


def test_unit_edges_keep_sparse_k_nearest():
    torch.manual_seed(0)
    block_ids = torch.tensor([0, 0, 1, 1, 1, 1, 2])
    Z = torch.randn(7, 1, 3)
    edges = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 1]])
    ps, pd, pg, ga, ge, er = unit_edges_from_block_edges(block_ids, edges, Z, 2)
    for g in range(ga.numel()):
        members = pd[pg == g]
        src = int(ga[g])
        e = int(ge[g])
        dst_block = int(edges[1, e])
        assert int(block_ids[src]) == int(edges[0, e])
        cand = torch.nonzero(block_ids == dst_block).flatten()
        d = (Z[cand, 0] - Z[src, 0]).norm(dim=-1)
        expect = set(cand[torch.argsort(d)[:2]].tolist())
        assert set(members.tolist()) == expect
        assert bool((ps[pg == g] == src).all())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_nearest_in_groups_matches_stable_sort(k):
    """The k nearest of each group, ties to the lower index: what ranking every
    candidate by a stable sort (distance, then group) and keeping the first k gives."""
    g = torch.Generator().manual_seed(k)
    sizes = torch.randint(1, 7, (300,), generator=g)
    group = torch.repeat_interleave(torch.arange(300), sizes)
    dist = torch.randint(0, 6, (group.numel(),), generator=g).float() / 3  # many ties
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    first = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(order.numel()) - first[group[order]]
    expect = torch.sort(order[rank < k]).values
    got = nearest_in_groups(dist, group, 300, k)
    assert torch.equal(got, expect)
    assert torch.equal(torch.jit.script(nearest_in_groups)(dist, group, 300, k), expect)
