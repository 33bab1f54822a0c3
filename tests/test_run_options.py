"""RunOptions: the options both rescoring workflows share, as one object
(get_md.workflows.rescoring.options)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from get_md.workflows.rescoring import RunOptions, rescore_poses, rescore_trajectory
from get_md.workflows.rescoring.options import accepts_run_options

from get_md.cli import build_parser
from get_md.errors import WorkflowError


def test_fields_are_keywords_of_both_workflows_with_the_same_defaults():
    for workflow in (rescore_poses, rescore_trajectory):
        params = inspect.signature(workflow).parameters
        assert "options" in params and params["options"].default is None
        for f in dataclasses.fields(RunOptions):
            assert params[f.name].default == f.default, (workflow.__name__, f.name)


def test_from_args_reads_the_shared_command_line_options():
    args = build_parser().parse_args([
        "rescore-poses", "r.pdb", "p.sdf", "--model", "m.pt", "--pocket-radius", "7",
        "--drop-unsupported", "--batch-size", "4", "--device", "cpu", "--dtype", "float64",
        "--workers", "2", "--parallel", "3", "--no-resume", "--quiet",
    ])
    opts = RunOptions.from_args(args, out_csv="p_rescored.csv")
    assert opts == RunOptions(model="m.pt", pocket_radius=7.0, drop_unsupported=True, batch_size=4,
                              device="cpu", dtype="float64", out_csv="p_rescored.csv", workers=2,
                              parallel=3, progress=False, resume=False)
    args = build_parser().parse_args(["rescore-traj", "t.pdb", "t.xtc", "--out-csv", "x.csv"])
    assert RunOptions.from_args(args) == RunOptions(out_csv="x.csv")


def test_options_fill_the_keywords_and_a_conflict_is_an_error():
    def workflow(a, model=None, *, pocket_radius=None, drop_unsupported=None, batch_size=None,
                 device="cpu", dtype=None, out_csv=None, workers=None, scheduler=None,
                 dask_processes=True, parallel=None, progress=None, resume=True, extra=0):
        return dict(locals())

    run = accepts_run_options(workflow)
    assert run(1, extra=2) == workflow(1, extra=2)
    got = run(1, extra=2, options=RunOptions(model="m.pt", batch_size=8, resume=False))
    assert got == workflow(1, "m.pt", batch_size=8, resume=False, extra=2)
    assert run(1, batch_size=8, options=RunOptions(batch_size=8))["batch_size"] == 8  # same value: fine
    with pytest.raises(WorkflowError, match="batch_size given twice"):
        run(1, batch_size=4, options=RunOptions(batch_size=8))
    with pytest.raises(WorkflowError, match="options must be a RunOptions"):
        run(1, options={"batch_size": 8})
    with pytest.raises(TypeError, match="lacks the RunOptions argument"):
        accepts_run_options(lambda a, model=None: a)


def test_counts_below_one_are_refused_before_the_run_writes_anything(tmp_path):
    calls = []

    def workflow(a, model=None, *, pocket_radius=None, drop_unsupported=None, batch_size=None,
                 device="cpu", dtype=None, out_csv=None, workers=None, scheduler=None,
                 dask_processes=True, parallel=None, progress=None, resume=True):
        calls.append(a)

    run = accepts_run_options(workflow)
    for name, value in (("batch_size", 0), ("workers", 0), ("workers", -1), ("parallel", 0), ("batch_size", 2.5)):
        with pytest.raises(WorkflowError, match=f"--{name.replace('_', '-')} must be >= 1, got {value}"):
            run(1, **{name: value})
        with pytest.raises(WorkflowError, match=f"--{name.replace('_', '-')} must be >= 1"):
            run(1, options=RunOptions(**{name: value}))
    assert calls == []
    run(1, batch_size=1, workers=2, parallel=1)
    assert calls == [1]
    # the real workflow: no progress file is left behind
    with pytest.raises(WorkflowError, match="--batch-size must be >= 1, got 0"):
        rescore_poses("rec.pdb", "poses.sdf", batch_size=0, out_csv=tmp_path / "o.csv")
    assert list(tmp_path.iterdir()) == []


def test_wrong_argument_types_are_named_before_anything_runs(tmp_path):
    """A DataFrame, an RDKit Mol, an mdtraj Trajectory, a list of files or None as a file
    argument had reached pathlib (``expected str, bytes or os.PathLike object, not
    DataFrame``); stride=1.5 had failed deep in the frame reader; a missing model path had
    been a bare FileNotFoundError; a misspelt keyword did not say whose or which."""
    import pandas as pd
    from get_md.workflows.rescoring.options import check_paths

    from get_md.errors import ModelFileError

    with pytest.raises(TypeError, match="rescore_poses: poses must be a file path .*got DataFrame; write it to a file"):
        rescore_poses("rec.pdb", pd.DataFrame({"smiles": ["C"]}))
    with pytest.raises(TypeError, match="rescore_poses: receptor must be a file path .*got None"):
        rescore_poses(None, "poses.sdf")
    with pytest.raises(TypeError, match="rescore_trajectory: trajectory must be a file path .*got list; give one file"):
        rescore_trajectory("top.pdb", ["a.xtc", "b.xtc"])
    with pytest.raises(TypeError, match="rescore_poses: out_csv must be a file path .*got int"):
        rescore_poses("rec.pdb", "poses.sdf", out_csv=3)
    with pytest.raises(WorkflowError, match="rescore_poses: reference is an empty path"):
        rescore_poses("rec.pdb", "poses.sdf", reference="")
    with pytest.raises(TypeError, match=r"rescore_poses\(\): got an unexpected keyword argument 'pocket_radiu' "
                                        r"\(did you mean 'pocket_radius'\?\)"):
        rescore_poses("rec.pdb", "poses.sdf", pocket_radiu=8)
    check_paths("f", {"a": tmp_path}, {"b": None})  # Path and None (optional) pass
    for name, value in (("stride", 1.5), ("chunk", None), ("start", "2")):
        with pytest.raises(WorkflowError, match=f"--{name} must be a whole number, got {value!r}"):
            rescore_trajectory("top.pdb", "traj.xtc", **{name: value})
    receptor, poses = tmp_path / "rec.pdb", tmp_path / "poses.sdf"
    receptor.write_text("END\n")
    poses.write_text("$$$$\n")
    with pytest.raises(ModelFileError, match="nosuch/model.pt: model file not found"):
        rescore_poses(receptor, poses, model="nosuch/model.pt")
    with pytest.raises(ValueError, match="--dtype: dtype float16 is not supported"):
        rescore_poses(receptor, poses, model="get-affinity", dtype="float16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poses.sdf", "rec.pdb"]


def test_pocket_radius_must_be_positive_and_finite():
    """0, negative, NaN and infinite radii are refused naming the option (inf had made the
    whole receptor the pocket without a word)."""
    from get_md.workflows.rescoring.pocket import pocket_radius_for

    assert pocket_radius_for({}, 8.0) == 8.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(WorkflowError, match="--pocket-radius must be"):
            pocket_radius_for({}, bad)


def test_flags_must_be_booleans():
    """A flag given as a string (``resume="no"``) had followed Python truthiness and meant
    True: refused naming the argument, directly and through RunOptions; None stays
    allowed where the annotation says Optional[bool]."""
    with pytest.raises(TypeError, match=r"rescore_poses: resume must be True or False, got 'no'"):
        rescore_poses("rec.pdb", "poses.sdf", resume="no")
    with pytest.raises(TypeError, match=r"rescore_trajectory: progress must be True or False \(or None\), got 0"):
        rescore_trajectory("top.pdb", "traj.xtc", ligand="resname LIG", options=RunOptions(progress=0))
    with pytest.raises(TypeError, match=r"per_residue must be True or False, got 'residues'"):
        rescore_poses("rec.pdb", "poses.sdf", per_residue="residues")
