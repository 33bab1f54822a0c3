"""``get-md nbody {generate,train,evaluate,rollout}``: argparse wiring of the N-body workflow."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .data import save_data
from .evaluate import evaluate, rollout
from .model import model_config
from .protocol import DEFAULT_FRAMES, FRAME_IN, FRAME_OUT, ZOO_NAME, NBodyError
from .simulate import simulate
from .train import NBodyTrainConfig, train_nbody


def _cmd_generate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    data = simulate(args.samples, seed=args.seed, n_frames=args.frames)
    data["protocol"]["command"] = getattr(args, "command_line", None)
    path = save_data(args.out, data)
    dt = time.perf_counter() - t0
    print(json.dumps({"out": str(path), "samples": args.samples, "frames": args.frames,
                      "seed": args.seed, "n_clipped": data["protocol"]["n_clipped"],
                      "seconds": round(dt, 2)}))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    model = model_config(args.family, args.d_model, args.n_layers, args.n_heads, args.n_rbf, args.cutoff,
                         args.dropout, args.ffn_mult, not args.no_charge_pairs, args.substeps,
                         not args.no_velocity_head)
    cfg = NBodyTrainConfig(
        family=args.family, model=model, train_data=args.train, valid_data=args.valid,
        output_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip if args.grad_clip > 0 else None,
        velocity_weight=0.0 if args.no_velocity_head else args.velocity_weight,
        charge_flip=not args.no_charge_flip, ema_decay=args.ema_decay,
        max_train=args.max_train, max_valid=args.max_valid, window_start=args.window_start,
        frame_in=args.frame_in,
        frame_out=args.frame_out, seed=args.seed, device=args.device, dtype=args.dtype,
        threads=args.threads, eval_every=args.eval_every, resume=not args.no_resume,
        verbose=not args.quiet,
    )
    res = train_nbody(cfg, command=getattr(args, "command_line", None))
    if args.register:
        from get_md import export, zoo

        zoo.register(args.register, res.model_path, export.read_metadata(res.model_path)["description"])
        print(f"registered {args.register} in the model zoo", file=sys.stderr)
    print(json.dumps({"model": str(res.model_path), "best_epoch": res.best_epoch,
                      "valid_mse": res.best_valid_mse, "epochs": res.last_epoch}))
    return 0


def _at_least_one(option: str, value: int) -> None:
    """Reject an option value below 1 (before any work), naming the option."""
    if value < 1:
        raise NBodyError(f"{option} must be >= 1, got {value}")


def _warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"get-md: warning: {message}", file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from get_md.runtime import parse_dtype

    _at_least_one("--batch-size", args.batch_size)
    res = evaluate(args.model, args.data, args.frame_in, args.frame_out, device=args.device,
                   batch_size=args.batch_size, dtype=parse_dtype(args.dtype, default=None),
                   warn=_warn)
    print(json.dumps(res))
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from get_md.runtime import parse_dtype

    res = rollout(args.model, args.data, sample=args.sample, steps=args.steps, frame_in=args.frame_in,
                  frame_out=args.frame_out, out_dir=args.out, device=args.device,
                  dtype=parse_dtype(args.dtype), warn=_warn)
    print(json.dumps(res))
    return 0


def register_cli(sub: Any) -> None:
    """Add ``get-md nbody {generate,train,evaluate,rollout}`` to the argparse sub-parsers."""
    p = sub.add_parser("nbody", help="N-body charged particles: generate, train, evaluate, rollout",
                       description="EGNN's charged-particle N-body task (5 particles, 3-D): "
                                   "predict positions at frame 40 from frame 30.")
    nsub = p.add_subparsers(dest="nbody_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])

    g = nsub.add_parser("generate", help="simulate trajectories to an .npz file",
                        description="Simulate trajectories (EGNN protocol) and write loc, vel "
                                    "[S, T, N, 3] and charges [S, N, 1] to an .npz file.")
    g.add_argument("--out", required=True, help="output .npz file")
    g.add_argument("--samples", type=int, default=3000, help="trajectories (default 3000)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"saved frames T, one per 100 steps (default {DEFAULT_FRAMES}, as EGNN)")
    g.set_defaults(func=_cmd_generate)

    t = nsub.add_parser("train", help="train an N-body model (resumable)",
                        description="Train a GeoMFormer (dense attention) or GET model to predict "
                                    "x(frame-out) - x(frame-in) and v(frame-out). Rerunning with "
                                    "the same --out resumes from its checkpoint.")
    t.add_argument("--train", required=True, help="training .npz")
    t.add_argument("--valid", required=True, help="validation .npz")
    t.add_argument("--family", choices=["geomformer", "get"], default="geomformer")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--d-model", type=int, default=64, help="feature channels (default 64)")
    t.add_argument("--n-layers", type=int, default=4, help="layers (default 4)")
    t.add_argument("--n-heads", type=int, default=8, help="attention heads (default 8)")
    t.add_argument("--n-rbf", type=int, default=32, help="Gaussian basis size (default 32)")
    t.add_argument("--ffn-mult", type=int, default=2, help="FFN width / d-model (default 2)")
    t.add_argument("--cutoff", type=float, default=10.0, help="radial basis range (default 10)")
    t.add_argument("--dropout", type=float, default=0.1, help="dropout (default 0.1)")
    t.add_argument("--substeps", type=int, default=1,
                   help="apply the network K times per interval, shared weights (cost x K)")
    t.add_argument("--no-charge-pairs", action="store_true",
                   help="GeoMFormer's encoder without the q_i q_j pair features")
    t.add_argument("--no-velocity-head", action="store_true",
                   help="predict displacement only (rollouts then estimate v as displacement/time)")
    t.add_argument("--velocity-weight", type=float, default=0.1,
                   help="loss weight of the velocity MSE (default 0.1)")
    t.add_argument("--no-charge-flip", action="store_true",
                   help="no augmentation by flipping all charges of a system (an exact symmetry)")
    t.add_argument("--ema-decay", type=float, default=0.995,
                   help="per-step decay of an exponential moving average of the weights used for "
                        "validation and export (default 0.995; 0: off)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--weight-decay", type=float, default=1e-6)
    t.add_argument("--warmup-epochs", type=int, default=2)
    t.add_argument("--min-lr-ratio", type=float, default=0.01)
    t.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    t.add_argument("--max-train", type=int, default=3000, help="training systems used (default 3000)")
    t.add_argument("--max-valid", type=int, default=2000, help="validation systems used (default 2000)")
    t.add_argument("--frame-in", type=int, default=FRAME_IN)
    t.add_argument("--register", default=None, metavar="NAME",
                   help=f"copy the trained model into the model zoo under NAME (the shipped one is {ZOO_NAME})")
    t.add_argument("--window-start", type=int, default=None,
                   help="also train on the earlier 10-frame windows of the training trajectories, "
                        "input frames drawn from WINDOW_START..frame-in (default: frame-in only)")
    t.add_argument("--frame-out", type=int, default=FRAME_OUT)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--eval-every", type=int, default=1, help="validate every k epochs")
    t.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(func=_cmd_train)

    e = nsub.add_parser("evaluate", help="position MSE of a model on a data file (JSON)",
                        description="Print one JSON object: mse (over samples, particles and "
                                    "coordinates, as EGNN), n_samples, model, baselines.")
    e.add_argument("--data", required=True, help=".npz file (any T > frame-out)")
    e.add_argument("--model", default=None, help=f"model file or zoo name (default: {ZOO_NAME})")
    e.add_argument("--frame-in", type=int, default=FRAME_IN)
    e.add_argument("--frame-out", type=int, default=FRAME_OUT)
    e.add_argument("--device", default="cpu")
    e.add_argument("--dtype", choices=["float32", "float64"], default=None)
    e.add_argument("--batch-size", type=int, default=500)
    e.set_defaults(func=_cmd_evaluate)

    r = nsub.add_parser("rollout", help="autoregressive rollout vs the simulator (PNG, CSV)",
                        description="Apply the model repeatedly from frame-in of one trajectory "
                                    "and compare with the simulator continued as long.")
    r.add_argument("--data", required=True, help=".npz file")
    r.add_argument("--model", default=None, help=f"model file or zoo name (default: {ZOO_NAME})")
    r.add_argument("--sample", type=int, default=0, help="trajectory index (default 0)")
    r.add_argument("--steps", type=int, default=5, help="intervals of frame-out - frame-in frames")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--frame-in", type=int, default=FRAME_IN)
    r.add_argument("--frame-out", type=int, default=FRAME_OUT)
    r.add_argument("--device", default="cpu")
    r.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    r.set_defaults(func=_cmd_rollout)
