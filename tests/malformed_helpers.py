"""Shared pieces of the malformed-input corpus (tests/test_malformed_corpus.py,
tests/test_malformed_models.py): the tiny models, the small valid inputs they are made
from, the no-hang guard and the CLI / error-line helpers."""

from __future__ import annotations

import contextlib
import gzip
import signal
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from get_md import export
from get_md.cli import EXIT_BAD_INPUT, main

DATA = Path(__file__).parent / "data" / "prolif"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)
#: seconds a single case may take before it counts as a hang
CASE_LIMIT_S = 120


@contextlib.contextmanager
def no_hang() -> Iterator[None]:
    """Fail a case that runs longer than CASE_LIMIT_S (SIGALRM; the main thread only)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"case ran longer than {CASE_LIMIT_S} s (a hang?)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class _Raising(torch.nn.Module):
    """A 'potential' whose forward always raises: an error inside a TorchScript file."""

    def __init__(self):
        super().__init__()
        self.family = "get"
        self.task = "energy"
        self.cutoff = 5.0
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                block_ids: torch.Tensor, atom_positions: torch.Tensor,
                block_types: torch.Tensor, segment_ids: torch.Tensor, batch_ids: torch.Tensor,
                cell: torch.Tensor, pbc: torch.Tensor) -> dict[str, torch.Tensor]:
        if positions.shape[0] > 0:
            raise RuntimeError("boom: this model refuses every input")
        return {"energy": self.w}


def make_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny energy model and a model whose forward raises, as files."""
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    export.save(build_model("get", **TINY), d / "energy.pt")
    export.save(_Raising(), d / "raising.pt")
    return {"energy": d / "energy.pt", "raising": d / "raising.pt"}


def make_inputs(tmp_path_factory) -> dict[str, Path]:
    """Small valid inputs: pocket receptor, its topology with the ligand, 2 poses, 3 frames."""
    import mdtraj as md

    d = tmp_path_factory.mktemp("inputs")
    t = md.load_pdb(str(DATA / "top.pdb"))
    lig = t.topology.select("resname LIG")
    near = md.compute_neighbors(t, 0.4, lig)[0]
    residues = {t.topology.atom(int(i)).residue.index for i in near}
    keep = [a.index for a in t.topology.atoms if a.residue.index in residues or a.index in set(lig)]
    small = t.atom_slice(keep)
    small.unitcell_vectors = None
    small.save_pdb(str(d / "top.pdb"))
    rec = [ln for ln in (d / "top.pdb").read_text().splitlines(keepends=True)
           if not (ln.startswith(("ATOM", "HETATM")) and ln[17:20] == "LIG")]
    (d / "rec.pdb").write_text("".join(rec))
    sdf = (DATA / "vina_output.sdf").read_text()
    records = sdf.split("$$$$\n")
    (d / "poses.sdf").write_text("$$$$\n".join(records[:2]) + "$$$$\n")
    rng = np.random.default_rng(0)
    xyz = np.repeat(small.xyz, 3, axis=0) + rng.normal(0, 0.002, (3, small.n_atoms, 3)).astype(np.float32)
    frames = md.Trajectory(xyz, small.topology, time=np.arange(3.0))
    frames.save_dcd(str(d / "traj.dcd"))
    frames.save_xtc(str(d / "traj.xtc"))
    np.save(d / "xyz.npy", xyz)
    return {"dir": d, "rec": d / "rec.pdb", "top": d / "top.pdb", "poses": d / "poses.sdf",
            "dcd": d / "traj.dcd", "xtc": d / "traj.xtc", "xyz": d / "xyz.npy",
            "lig": lig.size}


# ----------------------------------------------------------------------------- helpers
def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return rc, out, err


def _assert_error(rc: int, err: str, *names: str) -> str:
    """One ``get-md: error:`` line, naming every one of ``names``; exit code 2."""
    lines = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert rc == EXIT_BAD_INPUT, (rc, err)
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _sdf_records(inputs) -> list[str]:
    """The two pose records' texts, each ending with ``$$$$``."""
    text = inputs["poses"].read_text()
    return [r + "$$$$\n" for r in text.split("$$$$\n") if r.strip()]


def _with_atom_line(record: str, atom: int, edit: Callable[[str], str]) -> str:
    lines = record.split("\n")
    lines[3 + atom] = edit(lines[3 + atom])
    return "\n".join(lines)


def _coords(x: str) -> Callable[[str], str]:
    return lambda ln: f"{x:>10}" + ln[10:]


def _gz_cut_in_record(data: bytes, n_complete: int) -> bytes:
    """A prefix of ``gzip(data)`` that decompresses to exactly ``n_complete`` whole records."""
    gz = gzip.compress(data)
    for cut in range(len(gz) - 1, 10, -16):
        text = zlib.decompressobj(wbits=31).decompress(gz[:cut])
        if text.count(b"$$$$") == n_complete and len(text) > len(data) // 2:
            return gz[:cut]
    raise AssertionError("no cut point found")
