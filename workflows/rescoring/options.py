"""The options both rescoring workflows share, in one :class:`RunOptions`.

``rescore_poses`` and ``rescore_trajectory`` take them as keyword arguments, or as
``options=RunOptions(...)`` (:func:`accepts_run_options`); the subcommands build one
from their parsed arguments (:meth:`RunOptions.from_args`) and register the shared
command-line options with :func:`add_run_options` and :func:`add_drop_unsupported_option`.

Example:
    >>> opts = RunOptions(model="potential.pt", device="cpu", batch_size=8, progress=False)
    >>> opts.batch_size, opts.resume
    (8, True)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import os
from typing import Any, Callable, Optional, Union

from get_md.errors import WorkflowError

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Options shared by ``rescore_poses`` and ``rescore_trajectory`` (same names, same
    defaults and meaning as their keyword arguments).

    Attributes:
        model: model file or shipped name; None: the shipped default score model, else
            the default potential.
        pocket_radius: Å; None: the model file's ``pocket_radius``, else 10.
        drop_unsupported: leave pocket residues with elements the model does not
            support out of the pocket, with a warning (False: an error naming them;
            None: left out for a score model, an error for a potential).
        batch_size: structures per model call; None: 16 on CPU (fewer when the inputs
            would not fill ``parallel`` batches), from free memory on CUDA.
        device, dtype: where and in which precision the model runs (dtype None: the
            file's).
        out_csv: result table; its sidecar ``out_csv + ".partial"`` makes a run resumable.
        workers / scheduler: fan batches out over a local Dask cluster / an existing one.
        dask_processes: local cluster with worker processes (False: threads).
        parallel: batches scored at once in this process (without Dask); None: one per
            torch CPU thread on the CPU, 1 on a GPU.
        progress: progress bar (None: when stderr is a terminal).
        resume: reuse the finished batches of an interrupted run with the same inputs
            and options.
    """

    model: Optional[PathLike] = None
    pocket_radius: Optional[float] = None
    drop_unsupported: Optional[bool] = None
    batch_size: Optional[int] = None
    device: str = "cpu"
    dtype: Optional[str] = None
    out_csv: Optional[PathLike] = None
    workers: Optional[int] = None
    scheduler: Optional[str] = None
    dask_processes: bool = True
    parallel: Optional[int] = None
    progress: Optional[bool] = None
    resume: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace, out_csv: Optional[PathLike] = None) -> RunOptions:
        """The options of a parsed ``rescore-poses`` / ``rescore-traj`` command line
        (``out_csv``: the output chosen when ``--out-csv`` is not given)."""
        return cls(
            model=args.model, pocket_radius=args.pocket_radius, drop_unsupported=args.drop_unsupported,
            batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            out_csv=args.out_csv if out_csv is None else out_csv, workers=args.workers,
            scheduler=args.scheduler, parallel=args.parallel, progress=False if args.quiet else None,
            resume=not args.no_resume,
        )

    def as_keywords(self) -> dict[str, Any]:
        """The options as keyword arguments of the workflows."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_counts(arguments: dict) -> None:
    """WorkflowError for a count option below 1 (``batch_size``, ``workers``, ``parallel``),
    before the run claims its outputs or writes a progress file."""
    for name in ("batch_size", "workers", "parallel"):
        value = arguments.get(name)
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise WorkflowError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def flag_parameters(func: Callable) -> dict[str, bool]:
    """The parameters of ``func`` annotated ``bool`` (False) or ``Optional[bool]`` (True:
    None allowed), by name."""
    out = {}
    for name, p in inspect.signature(func).parameters.items():
        text = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        if text in ("bool", "Optional[bool]"):
            out[name] = text != "bool"
    return out


def check_flags(who: str, flags: dict[str, bool], arguments: dict) -> None:
    """TypeError naming the argument when a flag of :func:`flag_parameters` is neither True
    nor False (nor None where allowed): ``resume="no"`` had meant True.

    Example:
        >>> check_flags("rescore_poses", {"resume": False}, {"resume": "no"})
        Traceback (most recent call last):
        ...
        TypeError: rescore_poses: resume must be True or False, got 'no'
    """
    for name, optional in flags.items():
        value = arguments.get(name)
        if name not in arguments or (value is None and optional):
            continue
        if not (isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")):
            raise TypeError(f"{who}: {name} must be True or False{' (or None)' if optional else ''}, got {value!r}")


def check_paths(who: str, required: dict[str, Any], optional: dict[str, Any]) -> None:
    """TypeError naming the argument when a file argument of the workflow ``who`` is not a
    path (``str`` or ``os.PathLike``), or a required one is None: a DataFrame, an RDKit
    ``Mol``, an mdtraj ``Trajectory`` or a list of files had reached ``pathlib`` and came
    back as ``expected str, bytes or os.PathLike object, not DataFrame``.

    Example:
        >>> check_paths("rescore_poses", {"receptor": "rec.pdb", "poses": None}, {})
        Traceback (most recent call last):
        ...
        TypeError: rescore_poses: poses must be a file path (str or os.PathLike), got None
    """
    for name, value in [*required.items(), *optional.items()]:
        if value is None and name not in required:
            continue
        if not isinstance(value, (str, os.PathLike)):
            got = "None" if value is None else type(value).__name__
            hint = ("; give one file (join several into one, or call once per file)"
                    if isinstance(value, (list, tuple)) else
                    "; write it to a file first" if value is not None and not isinstance(value, (int, float, bytes))
                    else "")
            raise TypeError(f"{who}: {name} must be a file path (str or os.PathLike), got {got}{hint}")
        if not os.fspath(value).strip():
            raise WorkflowError(f"{who}: {name} is an empty path")


def around_call(
    enter: Callable[[Callable, dict[str, Any]], Optional[contextlib.AbstractContextManager]],
) -> Callable:
    """Decorator factory: before each call of the decorated ``func``, ``enter(func,
    arguments)`` gets the call's arguments by name, defaults applied; the call then runs
    inside the context manager ``enter`` returns (None: none).

    Example:
        >>> @around_call(lambda f, a: print(f.__name__, a))
        ... def area(w, h=2):
        ...     return w * h
        >>> area(3)
        area {'w': 3, 'h': 2}
        6
    """

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            context = enter(func, bound.arguments)
            with contextlib.nullcontext() if context is None else context:
                return func(*args, **kwargs)

        return run

    return decorate


def checks_paths(required: tuple[str, ...], optional: tuple[str, ...]) -> Callable:
    """Decorator: :func:`check_paths` on the workflow's file arguments (by name) before
    anything else of the call, outputs claimed included."""

    def check(func: Callable, arguments: dict[str, Any]) -> None:
        check_paths(func.__name__, {n: arguments[n] for n in required},
                    {n: arguments[n] for n in optional})

    return around_call(check)


def accepts_run_options(func: Callable) -> Callable:
    """Decorator: the workflow ``func`` (whose keyword arguments include every field of
    :class:`RunOptions`) also takes ``options: RunOptions``, whose fields then fill those
    arguments. An argument given both ways with different values is a WorkflowError."""
    signature = inspect.signature(func)
    flags = flag_parameters(func)
    names = [f.name for f in dataclasses.fields(RunOptions)]
    missing = [n for n in names if n not in signature.parameters]
    if missing:
        raise TypeError(f"{func.__qualname__} lacks the RunOptions argument(s) {', '.join(missing)}")

    def bind(args, kwargs) -> inspect.BoundArguments:
        try:
            return signature.bind(*args, **kwargs)
        except TypeError as e:  # "got an unexpected keyword argument 'pocket_radiu'": say whose, and the near miss
            import difflib

            close = [m for k in kwargs if k not in signature.parameters
                     for m in difflib.get_close_matches(k, list(signature.parameters), n=1)]
            raise TypeError(f"{func.__name__}(): {e}" + (f" (did you mean {close[0]!r}?)" if close else "")) from None

    @functools.wraps(func)
    def run(*args, options: Optional[RunOptions] = None, **kwargs):
        if options is None:
            arguments = bind(args, kwargs).arguments
            check_counts(arguments)
            check_flags(func.__name__, flags, arguments)
            return func(*args, **kwargs)
        if not isinstance(options, RunOptions):
            raise WorkflowError(f"options must be a RunOptions, got {type(options).__name__}")
        bound = bind(args, kwargs)
        for name in names:
            value = getattr(options, name)
            if name in bound.arguments and bound.arguments[name] != value:
                raise WorkflowError(f"{name} given twice: {bound.arguments[name]!r} and "
                                    f"{value!r} in options; give it once")
            bound.arguments[name] = value
        check_counts(bound.arguments)
        check_flags(func.__name__, flags, bound.arguments)
        return func(*bound.args, **bound.kwargs)

    option = inspect.Parameter("options", inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation="Optional[RunOptions]")
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), option])
    return run


def add_drop_unsupported_option(p: Any) -> None:
    """``--drop-unsupported``, shared by the rescoring subcommands (see :func:`~get_md.workflows.rescoring.pocket.screen_pocket`)."""
    p.add_argument("--drop-unsupported", action="store_true", default=None,
                   help="leave pocket residues with elements the model does not support (metal "
                        "ions, ...) out of the pocket, with a warning (default: so for a score model; "
                        "for a potential an error naming them)")


def add_run_options(p: Any, unit: str) -> None:
    """Options shared by the rescoring subcommands: batching, device, dtype, Dask, threads,
    resume and quiet. ``unit`` names what a batch holds ("poses", "frames")."""
    p.add_argument("--batch-size", type=int, metavar="N",
                   help=f"{unit} per model call (default 16 on CPU, from free memory on CUDA)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="model dtype (default: the file's)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", help="fan batches out over N local Dask workers")
    group.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask scheduler")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's; on shared machines 1 per free core)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="batches scored at once, each on threads/N torch threads (default: one "
                        "per thread on CPU, 1 on GPU)")
    p.add_argument("--no-resume", action="store_true", help="ignore the progress file of an earlier run")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
