"""The ``get-md`` command.

Subcommands are added by *registrars*: functions that take the argparse
sub-parsers object, add one sub-parser, and set its ``func`` default to a
handler ``func(args) -> int``. Built-in ones (info, train, export) live in
``SUBCOMMANDS``. The others are found through the entry-point group
``get_md.commands`` (``[project.entry-points."get_md.commands"]`` in pyproject.toml:
``name = "module:registrar"``), so another package can add a subcommand by declaring
one; run from a source tree whose get-md install declares no such entry points, the
same commands come from ``FALLBACK_COMMANDS``. ``EXTERNAL_SUBCOMMANDS`` adds more
at run time (``name -> "module:registrar"``; a module that does not exist is
skipped there). Registrar modules are imported when the parser is built (keep them
light at import time: import RDKit, mdtraj, OpenMM inside the handler). A module
that fails to import, or lacks its registrar, still gets a sub-command that reports
the error ("unavailable") when used.

Every error prints one line ``get-md: error: ...`` on stderr, never a traceback.
Errors from bad input (``get_md.GetMDError`` and its subclasses ``GraphError``,
``ModelFileError``, ``WorkflowError``, ...; builtin ``ValueError``, ``OSError``,
``KeyError``, ``EOFError``, ``RuntimeError`` and TorchScript's ``torch.jit.Error``
raised inside a model file) exit with code 2; their messages name the file and the
record. Anything else is a bug: one line ``unexpected <class>: ...`` and exit code 1.
``--traceback`` (or the environment variable ``GET_MD_TRACEBACK=1``) shows the
traceback instead.

Example:
    >>> from get_md.cli import main
    >>> main(["info", "model.pt", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from get_md.errors import ConfigError, GetMDError, ModelFileError, WorkflowError

Registrar = Callable[[Any], None]

#: Exit code for bad input (and errors raised inside a model file).
EXIT_BAD_INPUT = 2
#: Exit code for an unexpected error (a bug): one line, the traceback with --traceback.
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
#: Environment variable that, set to anything but "" or "0", shows tracebacks (as --traceback).
TRACEBACK_ENV = "GET_MD_TRACEBACK"
_TRACEBACK_HINT = f"rerun with --traceback or {TRACEBACK_ENV}=1 for the traceback"


def _jit_error_class() -> Optional[type]:
    torch = sys.modules.get("torch")  # no torch imported: no TorchScript error possible
    return getattr(getattr(torch, "jit", None), "Error", None) if torch is not None else None


def is_input_error(error: BaseException) -> bool:
    """Whether ``error`` is of a class that bad input raises (exit code 2, no traceback):
    :class:`get_md.GetMDError` (GraphError, ModelFileError, WorkflowError, ...), and
    builtin ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError and
    TorchScript's ``torch.jit.Error`` (raised inside model files; not a RuntimeError
    subclass)."""
    import zipfile

    known: tuple[type, ...] = (GetMDError, ValueError, OSError, KeyError, EOFError,
                               RuntimeError, zipfile.BadZipFile)
    jit_error = _jit_error_class()
    return isinstance(error, known) or (jit_error is not None and isinstance(error, jit_error))


def error_line(error: BaseException, model: Any = None) -> str:
    """The one line ``get-md`` prints for ``error`` (after ``get-md: error: ``).

    Known input errors give their message's first line (their messages name the file
    and the record); an error raised inside a TorchScript model gives its original
    exception line, naming ``model`` when given; anything else is reported as
    unexpected, with a hint to rerun with ``--traceback``.

    Example:
        >>> error_line(ValueError("poses.sdf: record 3: no atoms"))
        'poses.sdf: record 3: no atoms'
        >>> error_line(TypeError("bad operand"))  # doctest: +ELLIPSIS
        'unexpected TypeError: bad operand (a bug? rerun with --traceback ...)'
    """
    jit_error = _jit_error_class()
    if jit_error is not None and isinstance(error, jit_error):
        from get_md.export import model_error_message

        where = f"{model}: " if model else ""
        return f"{where}model failed: {model_error_message(error)} ({_TRACEBACK_HINT})"
    msg = error.args[0] if isinstance(error, KeyError) and error.args else error
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    text = lines[0] if lines else type(error).__name__
    if not is_input_error(error):
        return f"unexpected {type(error).__name__}: {text} (a bug? {_TRACEBACK_HINT})"
    if isinstance(error, (EOFError, KeyError)) and lines:
        text = f"{type(error).__name__}: {text}"
    if isinstance(error, RuntimeError):
        text += f" ({_TRACEBACK_HINT})"
    return text


# ----------------------------------------------------------------------------- info
def _format_value(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_format_value(v, True)}" for k, v in value.items())
        return f"{{{text}}}" if nested else (text or "-")
    if isinstance(value, list):
        text = ", ".join(_format_value(v, True) for v in value)
        return f"[{text}]" if nested else (text or "-")
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def format_metadata(meta: dict, source: str = "") -> str:
    """Readable multi-line text of a model file's metadata.

    Example:
        >>> print(format_metadata({"family": "get", "task": "energy"}))
        family            get
        task              energy
    """
    lines = [f"model file        {source}"] if source else []
    order = ["description", "family", "task", "units", "cutoff", "elements", "block_vocabulary",
             "inputs", "outputs", "config", "format_version", "get_md_version", "torch_version",
             "created", "weights_sha256"]
    keys = [k for k in order if k in meta] + [k for k in meta if k not in order and k != "training"]
    for k in keys:
        v = meta[k]
        if k == "cutoff" and isinstance(v, (int, float)):
            text = f"{v:g} Å"
        elif k == "elements" and v is None:
            text = "not restricted"
        else:
            text = _format_value(v)
        lines.append(f"{k:<17} {text}")
    training = meta.get("training") or {}
    if training:
        lines.append("training")
        for k, v in training.items():
            if k == "config" and isinstance(v, dict):
                v = {kk: vv for kk, vv in v.items() if vv not in (None, {}, [])}
            lines.append(f"  {k:<15} {_format_value(v)}")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    from get_md import export, zoo

    if args.model is None:
        models = zoo.available()
        if args.json:
            print(json.dumps(models, indent=2))
        elif not models:
            print("no shipped models; give a model file: get-md info MODEL.pt")
        else:
            for name, info in models.items():
                mark = " (default potential)" if name == zoo.DEFAULT_POTENTIAL else (
                    " (default score)" if name == zoo.DEFAULT_SCORE else "")
                print(f"{name:<24} {info.get('family', '?'):<11} {info.get('task', '?'):<8} "
                      f"{info.get('description', '')}{mark}")
        return 0
    path = export.resolve_model_path(args.model)
    meta = export.load(path)[1] if args.verify else export.read_metadata(path)
    if args.json:
        print(json.dumps(meta, indent=2))
    else:
        print(format_metadata(meta, str(path)))
        if args.verify:
            registered = zoo.registry_entry_for(path)
            extra = (f", matches the registry entry {registered[0]!r}"
                     if registered and registered[1] else "")
            print(f"integrity         OK (archive checksums and weights SHA-256 verified{extra})")
        else:
            print("integrity         not checked (--no-verify)")
    return 0


def _register_info(sub: Any) -> None:
    p = sub.add_parser("info", help="show a model file's metadata (or list shipped models)",
                       description="Show the metadata of a model file or shipped model; "
                                   "without MODEL, list the shipped models.")
    p.add_argument("model", nargs="?", metavar="MODEL", help="model file or shipped model name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="only read the metadata; skip loading the model and checking archive "
                        "checksums, the weights SHA-256 and, for shipped models, the registry")
    p.add_argument("--verify", dest="verify", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(verify=True)
    p.set_defaults(func=_cmd_info)


# ----------------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    from get_md.train import load_config, train

    config = load_config(args.config)
    overrides = {"output_dir": args.output_dir, "device": args.device,
                 "max_epochs": args.max_epochs, "dtype": args.dtype, "seed": args.seed}
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if args.no_resume:
        config.resume = False
    if args.quiet:
        config.verbose = False
    config.validate()
    result = train(config, command=args.command_line)
    print(f"best epoch {result.best_epoch}, valid loss {result.best_valid_loss:.6g}; "
          f"model: {result.model_path}")
    return 0


def _register_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model from a config file (resumes if interrupted)",
                       description="Train a model as the JSON/YAML config file says. Rerunning "
                                   "with the same output directory resumes from its checkpoint.")
    p.add_argument("config", metavar="CONFIG", help="training config (.json, or .yaml with PyYAML)")
    p.add_argument("--output-dir", "-o", help="override the config's output_dir")
    p.add_argument("--device", help="override the device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="override the dtype")
    p.add_argument("--max-epochs", type=int, help="override max_epochs")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=_cmd_train)


# ----------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> int:
    from get_md import export
    from get_md.train.loop import build_model_for

    src, out = Path(args.checkpoint), Path(args.out)
    _check_export_out(out)
    elements = _parse_elements(args.elements) if args.elements is not None else None
    fmt = "pt2" if out.suffix.lower() == ".pt2" else "torchscript"  # by OUT's name
    if src.is_file() and _is_model_file(src):  # before the checkpoint checks: a pt2 file holds no pickle
        written = export.rescript(src, out, format=fmt)
        print(f"re-scripted {src} -> {out} with get_md {written['get_md_version']} "
              f"(same weights, sha256 {written['weights_sha256'][:12]}...)")
        return 0
    _check_checkpoint_file(src)
    ckpt, state, family, model_config = _read_checkpoint(src)
    recorded = (family, model_config) if family and model_config is not None else None
    meta: dict[str, Any] = {}
    if args.config:
        config_family, model_config, meta = _export_config(Path(args.config))
        family = config_family or family
    if args.family:
        family = args.family
    if not family or model_config is None:
        raise ModelFileError(f"{src}: holds no model family/config; pass --config (training config "
                         "or JSON of hyper-parameters) and --family")
    model = build_model_for(family, model_config)
    if recorded is not None:
        _check_recorded_model(src, recorded, family, dict(getattr(model, "config", None) or model_config))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(f"{src}: weights do not fit a {family} model with this config "
                         f"({str(e).splitlines()[0]})") from e
    bad = export.nonfinite_weights(model)
    if bad:  # every load would refuse the file
        raise ModelFileError(f"{src}: weights contain non-finite values (NaN or inf): {bad}; the training "
                             "run diverged: export an earlier checkpoint (best.pt)")
    if elements is not None:
        meta["elements"] = elements
    if args.description:
        meta["description"] = args.description
    meta["command"] = args.command_line
    if "epoch" in ckpt:
        meta["metrics"] = {"epoch": int(ckpt["epoch"]),
                           **({"valid_loss": float(ckpt["valid_loss"])} if "valid_loss" in ckpt else {}),
                           **(ckpt.get("valid_metrics") or {})}
    written = export.save(model, out, meta, format=fmt)
    print(f"wrote {out} ({written['family']}, task {written['task']}, {fmt}, "
          f"sha256 {written['weights_sha256'][:12]}...)")
    return 0


def _check_recorded_model(src: Path, recorded: tuple[str, dict], family: str, config: dict) -> None:
    """ModelFileError when ``--config`` / ``--family`` build another model than the checkpoint
    records: a score model's weights fit a GET potential and had been exported as one."""
    diff = [f"family {recorded[0]!r} -> {family!r}"] if recorded[0] != family else []
    diff += [f"{k} {v!r} -> {config[k]!r}" for k, v in recorded[1].items() if k in config and config[k] != v]
    if diff:
        raise ModelFileError(f"{src}: the checkpoint was trained as another model than --config / --family "
                             f"give ({', '.join(diff)}); leave them out to export the model it records")


def _check_export_out(out: Path) -> None:
    """The model file to write must not be a folder."""
    if out.is_dir():
        raise ModelFileError(f"OUT {out}: is a directory; give a file name")


def _parse_elements(text: str) -> list[str]:
    """Element symbols of ``--elements`` ("H,C,N,O"), checked; WorkflowError naming the option.

    Example:
        >>> _parse_elements("h, C")
        ['H', 'C']
    """
    from get_md import vocab

    symbols = [e.strip() for e in text.split(",") if e.strip()]
    if not symbols:
        raise WorkflowError(f"--elements: no element symbols in {text!r}; give e.g. H,C,N,O")
    out = []
    for symbol in symbols:
        try:
            out.append(vocab.ELEMENTS[vocab.atomic_number(symbol)])
        except KeyError:
            raise WorkflowError(f"--elements: unknown element {symbol!r}") from None
    return out


def _check_checkpoint_file(src: Path) -> None:
    """A missing file, a folder, an empty file or one that is no torch file: ModelFileError."""
    from get_md.train.checkpoint import torch_file_problem

    problem = torch_file_problem(src, "checkpoint")
    if problem is not None:
        raise ModelFileError(f"{src}: {problem}")


def _read_checkpoint(src: Path) -> tuple[dict, dict, Optional[str], Optional[dict]]:
    """``(checkpoint, weights, family, model_config)`` of a checkpoint or a plain state dict."""
    import torch

    from get_md.train.checkpoint import load_torch_file

    ckpt = load_torch_file(src, "checkpoint", ModelFileError)
    if not isinstance(ckpt, dict):
        raise ModelFileError(f"{src}: not a checkpoint or state dict")
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        return ckpt, ckpt["model"], ckpt.get("family"), ckpt.get("model_config")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, ckpt, None, None
    raise ModelFileError(f"{src}: not a get_md checkpoint (checkpoint.pt / best.pt) or a state dict")


def _export_config(path: Path) -> tuple[Optional[str], dict, dict]:
    """``(family or None, model hyper-parameters, metadata)`` from ``--config``: a training
    config, or a JSON map of hyper-parameters."""
    from get_md.train.config import check_model_config, load_config, read_config_data

    if not path.exists():
        raise ConfigError(f"--config {path}: file not found")
    data = read_config_data(path, name=f"--config {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a JSON object (map of hyper-parameters "
                          "or a training config)")
    if "model" not in data and "family" not in data:
        try:
            check_model_config(data, prefix="")
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
        return None, data, {}
    cfg = load_config(path)
    meta = {**cfg.export_metadata, "training": {"config": cfg.to_dict()}}
    return cfg.family, cfg.model, meta


def _is_model_file(path: Path) -> bool:
    """Whether ``path`` is a get_md model file (else it is read as a checkpoint)."""
    from get_md import export

    try:
        export.read_metadata(path)
    except export.ModelFileError:
        return False
    return True


def _register_export(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint as a self-describing TorchScript file",
                       description="Export checkpoint.pt / best.pt (or a state dict with --config) "
                                   "as a model file that runs with torch.jit.load alone. Given a "
                                   "model file, re-script it with this get_md's code (same weights "
                                   "and metadata).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="checkpoint.pt, best.pt, a state dict, or a model file to re-script")
    p.add_argument("out", metavar="OUT", help="model file to write: .pt (TorchScript) or .pt2 "
                                              "(torch.export program, needs get_md to run)")
    p.add_argument("--config", help="training config, or JSON of model hyper-parameters")
    p.add_argument("--family", help="model family (get, geomformer) if the checkpoint lacks it")
    p.add_argument("--elements", help="comma-separated supported elements, e.g. H,C,N,O")
    p.add_argument("--description", help="one-line description stored in the metadata")
    p.set_defaults(func=_cmd_export)


# ----------------------------------------------------------------------------- registry
#: Built-in subcommands: name -> registrar.
SUBCOMMANDS: dict[str, Registrar] = {
    "info": _register_info,
    "train": _register_train,
    "export": _register_export,
}

#: Entry-point group of subcommands: ``name = "module:registrar"``.
COMMANDS_GROUP = "get_md.commands"
#: get_md's own entry points of ``COMMANDS_GROUP`` (as in pyproject.toml), used when the
#: installed get-md declares none (run from a source tree, or an older install).
FALLBACK_COMMANDS: dict[str, str] = {
    "rescore-poses": "get_md.workflows.poses:register_cli",
    "rescore-traj": "get_md.workflows.trajectory:register_cli",
    "nbody": "get_md.workflows.nbody:register_cli",
    "demo": "get_md.workflows.demo:register_cli",
    "md": "get_md.workflows.md:register_cli",
}
#: Subcommands added at run time: name -> "module:registrar" (imported lazily; a module
#: that does not exist is skipped).
EXTERNAL_SUBCOMMANDS: dict[str, str] = {}


def register_subcommand(name: str, registrar: Registrar) -> None:
    """Add (or replace) a subcommand; ``registrar(subparsers)`` adds a parser with ``func``.

    Example:
        >>> def reg(sub):
        ...     p = sub.add_parser("hello", help="say hello")
        ...     p.set_defaults(func=lambda args: print("hello") or 0)
        >>> register_subcommand("hello", reg)
        >>> main(["hello"])
        hello
        0
    """
    SUBCOMMANDS[name] = registrar


def _entry_points() -> list[Any]:
    """The installed entry points of ``COMMANDS_GROUP`` (any distribution)."""
    return list(metadata.entry_points(group=COMMANDS_GROUP))


def _declares_commands() -> bool:
    """Whether the installed get-md distribution declares ``COMMANDS_GROUP`` entry points."""
    try:
        dist = metadata.distribution("get-md")
    except metadata.PackageNotFoundError:
        return False
    return any(ep.group == COMMANDS_GROUP for ep in dist.entry_points)


def command_targets() -> dict[str, str]:
    """Subcommands beyond the built-in ones: name -> ``"module:registrar"``.

    The entry points of ``COMMANDS_GROUP``; when get-md itself declares none there,
    ``FALLBACK_COMMANDS`` (an entry point of another package with the same name wins).
    get_md's own commands come first, in ``FALLBACK_COMMANDS`` order, then the others
    by name.
    """
    found = {ep.name: ep.value for ep in _entry_points()}
    if not _declares_commands():
        found = {**FALLBACK_COMMANDS, **found}
    order = [n for n in FALLBACK_COMMANDS if n in found] + sorted(set(found) - set(FALLBACK_COMMANDS))
    return {n: found[n] for n in order}


def _unavailable(name: str, target: str, error: BaseException) -> Registrar:
    def registrar(sub: Any) -> None:
        p = sub.add_parser(name, help=f"(unavailable: {error.__class__.__name__})",
                           add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs=argparse.REMAINDER)

        def fail(args: argparse.Namespace) -> int:
            raise WorkflowError(f"'{name}' is unavailable: importing {target} failed ({error})")

        p.set_defaults(func=fail)

    return registrar


def _registrar(name: str, target: str, skip_missing: bool) -> Optional[Registrar]:
    """The registrar ``target`` (``"module:attr"``) names, an "unavailable" stand-in when
    it cannot be loaded, or None when ``skip_missing`` and its module does not exist."""
    mod_name, _, attr = target.partition(":")
    mod_name, attr = mod_name.strip(), attr.split("[")[0].strip()  # drop entry-point extras
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if skip_missing and e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
            return None  # not written / not installed: no such subcommand
        return _unavailable(name, target, e)
    except Exception as e:  # a broken module must not break the other commands
        return _unavailable(name, target, e)
    fn: Any = module
    for part in attr.split(".") if attr else []:
        fn = getattr(fn, part, None)
    if fn is None or fn is module or not callable(fn):
        return _unavailable(name, target, AttributeError(f"{mod_name} has no {attr or 'registrar'}"))
    return fn


def _external_registrars() -> dict[str, Registrar]:
    out: dict[str, Registrar] = {}
    sources = [(command_targets(), False), (EXTERNAL_SUBCOMMANDS, True)]
    for targets, skip_missing in sources:
        for name, target in targets.items():
            if name in SUBCOMMANDS:
                continue
            fn = _registrar(name, target, skip_missing)
            if fn is not None:
                out[name] = fn
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``get-md`` argument parser with every registered subcommand."""
    import get_md

    parser = argparse.ArgumentParser(
        prog="get-md",
        description="GET / GeoMFormer equivariant transformers for molecular simulation.",
    )
    parser.add_argument("--version", action="version", version=f"get-md {get_md.__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help=f"show the traceback of an error (also anywhere after COMMAND, or "
                             f"{TRACEBACK_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for registrar in {**SUBCOMMANDS, **_external_registrars()}.values():
        registrar(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``get-md`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Example:
        >>> main(["--version"])  # doctest: +SKIP
        get-md 0.1.0
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # --traceback is accepted anywhere on the line, also after the subcommand's arguments
    want_traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    from get_md.perf import tune_cpu_allocator

    tune_cpu_allocator()  # large graphs: keep freed buffers in the heap (see get_md.perf)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (code 2)
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_BAD_INPUT
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    args.command_line = shlex.join(["get-md", *argv])
    debug = want_traceback or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("get-md: interrupted (rerun the same command to resume where supported)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that turns errors into one line
        if debug:
            raise
        known = is_input_error(e)
        print(f"get-md: error: {error_line(e, getattr(args, 'model', None))}", file=sys.stderr)
        return EXIT_BAD_INPUT if known else EXIT_INTERNAL


def run_module(module_main: Callable[[Optional[Sequence[str]]], int], prog: str,
               argv: Optional[Sequence[str]] = None) -> int:
    """Run a recipe's ``main(argv)`` (``python -m get_md.train.affinity`` and the like) as
    ``get-md`` runs a subcommand: an error becomes one ``PROG: error: ...`` line naming the
    file and record (exit 2 for bad input, 1 otherwise), not a traceback; ``--traceback`` or
    ``GET_MD_TRACEBACK=1`` shows the traceback.

    Example:
        >>> run_module(lambda argv: 0, "python -m x", [])
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--traceback" in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--traceback"]
    try:
        return int(module_main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (rerun the same command to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - bad input as one line, as get-md does
        if debug:
            raise
        print(f"{prog}: error: {error_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT if is_input_error(e) else EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
