"""Generate ``tests/data/get_reference_fixture.pt`` from the public GET reference code.

The reference implementation (``get_clean`` of https://github.com/THUNLP-MT/GET, MIT
licence) is NOT part of this repository. This script imports it from a scratch
directory named by the environment variable ``GET_REFERENCE_PATH``, prepared like this::

    REF_REPO=/path/to/clone/of/THUNLP-MT/GET          # git clone https://github.com/THUNLP-MT/GET
    REF_COMMIT=ce68ea833c45f3c2b0336bdb713ed9c9ce9a86a3
    mkdir -p /tmp/getref
    git -C "$REF_REPO" archive "$REF_COMMIT" get_clean LICENSE | tar -x -C /tmp/getref
    echo "$REF_COMMIT" > /tmp/getref/REFERENCE_COMMIT

``get_clean`` imports ``torch_scatter``. Either install the real package
(``pip install torch_scatter``) or put a small plain-torch stand-in at
``/tmp/getref/torch_scatter/__init__.py`` that provides ``scatter_sum``, ``scatter_mean``,
``scatter_std``, ``scatter_softmax``, ``scatter_min`` with torch_scatter 2.x semantics
(see ``tests/data/get_reference_fixture.md``). Then::

    GET_REFERENCE_PATH=/tmp/getref python tests/data/make_get_reference_fixture.py

The fixture holds, per case: the hyper-parameters, the (randomly perturbed) reference
``state_dict`` (parameters stored as float16 that are exact in float32), the inputs, the forward outputs, and input gradients of a fixed random
linear functional of the outputs. It is consumed by get_md's parity tests through
``get_md.models.convert.convert_reference_state_dict``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "get_reference_fixture.pt"

BASE_CONFIG = dict(
    d_hidden=32,
    d_radial=16,
    n_channel=1,
    n_rbf=16,
    cutoff=7.0,
    d_edge=16,
    n_layers=2,
    n_head=4,
    act_fn="SiLU",
    residual=True,
    dropout=0.1,
    z_requires_grad=True,
    pre_norm=False,
    sparse_k=3,
)

CASES = [
    # (name, overrides, seed). The first case is the headline configuration; the extra cases
    # use d_hidden=16, n_layers=1 to keep the file small (< 500 KB) while covering n_channel=2 and pre_norm=True.
    ("nc1_edge16", {}, 0),
    ("nc2_edge16_small", {"n_channel": 2, "d_hidden": 16, "n_layers": 1}, 1),
    ("nc1_edge16_prenorm_small", {"pre_norm": True, "d_hidden": 16, "n_layers": 1}, 2),
]
# No d_edge=0 case: the reference's att_mlp input width is hard-wired to
# 3 * d_radial / n_head + n_channel * n_rbf / n_head, so reference GET fails with a shape
# error whenever edge_attr is None (checked at the commit recorded in the fixture).


def _import_reference():
    ref_path = os.environ.get("GET_REFERENCE_PATH")
    if not ref_path:
        sys.exit("GET_REFERENCE_PATH is not set; see the module docstring for how to prepare it.")
    ref_path = str(Path(ref_path).resolve())
    if ref_path not in sys.path:
        sys.path.insert(0, ref_path)
    import get_clean  # noqa: E402  (imported from GET_REFERENCE_PATH)
    import torch_scatter  # noqa: E402

    commit = os.environ.get("GET_REFERENCE_COMMIT")
    commit_file = Path(ref_path) / "REFERENCE_COMMIT"
    if commit is None and commit_file.exists():
        commit = commit_file.read_text().strip()
    if not commit:
        sys.exit("reference commit unknown: write it to $GET_REFERENCE_PATH/REFERENCE_COMMIT "
                 "or set GET_REFERENCE_COMMIT")
    scatter_backend = f"torch_scatter {getattr(torch_scatter, '__version__', '?')}"
    return get_clean, commit, scatter_backend


def fully_connected_block_edges(batch_id: torch.Tensor) -> torch.Tensor:
    """All ordered (src, dst) block pairs inside each graph, self pairs included. [2, E]."""
    rows, cols = [], []
    for g in torch.unique(batch_id, sorted=True).tolist():
        idx = torch.nonzero(batch_id == g).flatten()
        rows.append(idx.repeat_interleave(len(idx)))
        cols.append(idx.repeat(len(idx)))
    return torch.stack([torch.cat(rows), torch.cat(cols)], dim=0)


def make_inputs(cfg: dict, gen: torch.Generator, blocks_per_graph=(7, 5)) -> dict:
    n_blocks = sum(blocks_per_graph)
    batch_id = torch.cat([torch.full((n,), g, dtype=torch.long)
                          for g, n in enumerate(blocks_per_graph)])
    atoms_per_block = torch.randint(1, 6, (n_blocks,), generator=gen)
    block_id = torch.repeat_interleave(torch.arange(n_blocks), atoms_per_block)
    n_atoms = int(atoms_per_block.sum())
    H = torch.randn(n_atoms, cfg["d_hidden"], generator=gen)
    Z = torch.randn(n_atoms, cfg["n_channel"], 3, generator=gen) * 2.0
    edges = fully_connected_block_edges(batch_id)
    edge_attr = (torch.randn(edges.shape[1], cfg["d_edge"], generator=gen)
                 if cfg["d_edge"] > 0 else None)
    return dict(H=H, Z=Z, block_id=block_id, batch_id=batch_id, edges=edges, edge_attr=edge_attr)


def build_reference(get_clean, cfg: dict, gen: torch.Generator) -> torch.nn.Module:
    kwargs = dict(cfg)
    kwargs["act_fn"] = getattr(torch.nn, kwargs["act_fn"])()
    model = get_clean.GET(**kwargs).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            # every parameter moved away from its initial value; LayerNorm weights and the
            # layer-norm sigmas stay near 1 because they start at 1.
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            # round to float16-representable values so the parameters can be stored as
            # float16 without loss (halves the file size; the model still runs in float32)
            p.copy_(p.half().float())
    return model


def run_reference(model, inputs):
    H = inputs["H"].clone().requires_grad_(True)
    Z = inputs["Z"].clone().requires_grad_(True)
    H_out, Z_out = model(H, Z, inputs["block_id"], inputs["batch_id"], inputs["edges"],
                         inputs["edge_attr"])
    return H, Z, H_out, Z_out


def make_case(get_clean, name: str, overrides: dict, seed: int) -> dict:
    cfg = {**BASE_CONFIG, **overrides}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_reference(get_clean, cfg, gen)
    inputs = make_inputs(cfg, gen)

    H, Z, H_out, Z_out = run_reference(model, inputs)
    # fixed random linear functional of the outputs -> input gradients
    w_H = torch.randn(H_out.shape, generator=gen)
    w_Z = torch.randn(Z_out.shape, generator=gen)
    loss = (H_out * w_H).sum() + (Z_out * w_Z).sum()
    grad_H, grad_Z = torch.autograd.grad(loss, (H, Z))

    # determinism: a second run on the same inputs must be bit-identical
    _, _, H_out2, Z_out2 = run_reference(model, inputs)
    if not (torch.equal(H_out, H_out2) and torch.equal(Z_out, Z_out2)):
        raise RuntimeError(f"reference forward not deterministic for case {name}")

    for t in (H_out, Z_out, grad_H, grad_Z):
        if not torch.isfinite(t).all():
            raise RuntimeError(f"non-finite values in case {name}")

    param_names = {k for k, _ in model.named_parameters()}
    state_dict = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone().contiguous()
        if k in param_names:
            half = v.half()
            assert torch.equal(half.float(), v)  # exact: values were rounded above
            v = half
        state_dict[k] = v
    return dict(
        name=name,
        config=cfg,
        seed=seed,
        state_dict=state_dict,
        inputs=inputs,
        outputs=dict(H=H_out.detach().clone(), Z=Z_out.detach().clone()),
        grad_weights=dict(H=w_H, Z=w_Z),
        grads=dict(H=grad_H.detach().clone(), Z=grad_Z.detach().clone()),
        n_atoms=int(inputs["H"].shape[0]),
        n_blocks=int(inputs["batch_id"].shape[0]),
        n_edges=int(inputs["edges"].shape[1]),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    torch.set_default_dtype(torch.float32)
    get_clean, commit, scatter_backend = _import_reference()

    cases = [make_case(get_clean, *c) for c in CASES]
    first = cases[0]
    fixture = dict(
        # the first case is repeated at top level (torch.save stores shared tensors once)
        config=first["config"],
        state_dict=first["state_dict"],
        inputs=first["inputs"],
        outputs=first["outputs"],
        cases=cases,
        reference_repo="https://github.com/THUNLP-MT/GET",
        reference_module="get_clean",
        reference_commit=commit,
        scatter_backend=scatter_backend,
        torch_version=str(torch.__version__),
        state_dict_note=("learnable parameters are stored as float16 holding exactly the "
                         "float32 values used for the forward pass (cast with .float()); "
                         "buffers are float32"),
        generator="tests/data/make_get_reference_fixture.py",
    )
    torch.save(fixture, args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KB), reference {commit}, {scatter_backend}")
    for c in cases:
        print(f"  {c['name']}: atoms={c['n_atoms']} blocks={c['n_blocks']} edges={c['n_edges']} "
              f"params={sum(v.numel() for v in c['state_dict'].values())}")


if __name__ == "__main__":
    main()
