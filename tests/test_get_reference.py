"""GET against the public reference implementation (THUNLP-MT/GET, ``get_clean``).

The fixture was made once by running the reference code; see
tests/data/get_reference_fixture.md. Reference weights are loaded through
``get_md.models.convert`` and must give the same outputs and input gradients.
"""

from pathlib import Path

import pytest
import torch

from get_md.models.convert import load_reference_into
from get_md.models.get_layers import GETEncoder

FIXTURE = Path(__file__).parent / "data" / "get_reference_fixture.pt"
CASES = torch.load(FIXTURE)["cases"]


def _build(case):
    cfg = dict(case["config"])
    cfg.pop("act_fn")
    enc = GETEncoder(**cfg)
    load_reference_into(enc, case["state_dict"])
    return enc.eval()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_outputs_match_reference(case):
    enc = _build(case)
    x = case["inputs"]
    H, Z = enc(x["H"], x["Z"], x["block_id"], x["batch_id"], x["edges"], x["edge_attr"])
    torch.testing.assert_close(H, case["outputs"]["H"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Z, case["outputs"]["Z"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_input_gradients_match_reference_apart_from_distances(case, monkeypatch):
    """The reference's ``stable_norm`` rebuilds its input under ``torch.no_grad()``, so no
    gradient flows through inter-atomic distances there (a bug for forces = -dE/dx).
    get_md differentiates through distances. With distances detached, as in the
    reference, every other gradient path must agree."""
    import get_md.models.get_attention as attention
    import get_md.models.get_layers as layers

    exact_norm = layers.stable_norm
    for module in (layers, attention):  # every module of the encoder that calls stable_norm
        monkeypatch.setattr(module, "stable_norm", lambda x, dim=-1: exact_norm(x.detach(), dim=dim))
    enc = _build(case)
    x = case["inputs"]
    H_in = x["H"].clone().requires_grad_(True)
    Z_in = x["Z"].clone().requires_grad_(True)
    H, Z = enc(H_in, Z_in, x["block_id"], x["batch_id"], x["edges"], x["edge_attr"])
    w = case["grad_weights"]
    (H * w["H"]).sum().add((Z * w["Z"]).sum()).backward()
    torch.testing.assert_close(H_in.grad, case["grads"]["H"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(Z_in.grad, case["grads"]["Z"], rtol=1e-4, atol=1e-4)


def test_gradients_through_distances_match_finite_differences():
    case = CASES[1]
    enc = _build(case).double()
    x = {k: (v.double() if v.is_floating_point() else v) for k, v in case["inputs"].items()}
    Z_in = x["Z"].clone().requires_grad_(True)
    w = {k: v.double() for k, v in case["grad_weights"].items()}

    def f(Z):
        H, Zo = enc(x["H"], Z, x["block_id"], x["batch_id"], x["edges"], x["edge_attr"])
        return (H * w["H"]).sum() + (Zo * w["Z"]).sum()

    f(Z_in).backward()
    h = 1e-6
    for idx in [(0, 0, 0), (5, 1, 2), (17, 0, 1)]:
        zp, zm = x["Z"].clone(), x["Z"].clone()
        zp[idx] += h
        zm[idx] -= h
        fd = (f(zp) - f(zm)) / (2 * h)
        fd = float(fd.detach())
        assert abs(fd - float(Z_in.grad[idx])) < 1e-5 * max(1.0, abs(fd))


def test_scripted_encoder_matches_reference():
    case = CASES[0]
    enc = torch.jit.script(_build(case))
    x = case["inputs"]
    H, Z = enc(x["H"], x["Z"], x["block_id"], x["batch_id"], x["edges"], x["edge_attr"])
    torch.testing.assert_close(H, case["outputs"]["H"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(Z, case["outputs"]["Z"], rtol=1e-5, atol=1e-5)


def test_converter_rejects_mismatched_weights():
    case = CASES[0]
    sd = dict(case["state_dict"])
    sd.pop(next(k for k in sd if k.endswith("linear_v.weight")))
    cfg = dict(case["config"])
    cfg.pop("act_fn")
    with pytest.raises(KeyError, match="missing"):
        load_reference_into(GETEncoder(**cfg), sd)
