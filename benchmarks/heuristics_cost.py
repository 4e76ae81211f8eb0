"""What the three training-free scores cost, as a multiple of one forward+backward pass.

For 8 NAS-Bench-201 architectures (the benchmark's best, an all-``none`` cell, a pool/skip-only
cell, the all-``nor_conv_3x3`` cell and 4 seeded random ones) on CPU and one CIFAR-10 batch, it
times in one process, interleaved, medians of ``--repeats``:

* one forward+backward of the network (train mode, sum of logits, gradients of every weight);
* each score alone (``ntk_condition_number`` fast, ``activation_score``, ``jacobian_score``) and
  ``score_all`` (the three sharing one forward and one backward pass), and the scoring of the
  ``nb201-cifar10`` preset (its metrics, NTK mode and NTK batch, read from ``studies/``);
* the exact-mode NTK and the per-sample backward loop it replaces (TE-NAS's: one ``backward`` per
  sample, gradients read from ``.grad`` and flattened, ``Theta = J J^T``), once each, and how far
  their condition numbers differ;
* how close the exact NTK is to its floor in floating-point work, one forward and ``B`` backward
  passes of the batch (each row of ``J`` needs the whole batch's backward pass through the batch
  statistics), timed as ``fwd + B * (fwd+bwd - fwd)``; and, for an exact batch of at most 16, the
  most any vectorisation of those ``B`` passes could gain on this machine: ``B`` single backward passes
  against one backward pass of the batch repeated ``B`` times (``B^2`` images, the same arithmetic in
  one call per layer; an optimistic bound, as the repeated batch shares one weight gradient).

Degenerate networks are timed with ``on_degenerate="worst"`` and left out of the floor and the bound
(their backward passes do next to nothing). The last line is one JSON object with
``ratio_all_median`` (score_all / forward+backward, median over architectures),
``ntk_exact_speedup_vs_loop`` (loop / exact, median), ``ntk_exact_vs_floor`` (exact / floor, median)
and ``ntk_batched_bound`` (the vectorisation bound, median), among others.

    .venv/bin/python benchmarks/heuristics_cost.py [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, NB201_CSV, NB201_PRESET, cifar_batch, load_nb201, median, require, timed  # noqa: E402

from nas_sampler import NB201Space  # noqa: E402
from nas_sampler.heuristics import (  # noqa: E402
    WORST_SCORE,
    activation_score,
    jacobian_score,
    ntk_condition_number,
    score_all,
)
from nas_sampler.phenotype import count_parameters  # noqa: E402

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOL_SKIP = "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|"
DENSE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def choose_archs(table: dict[str, float], seed: int) -> list[tuple[str, str]]:
    best = max(table, key=table.get)
    fixed = [("best", best), ("all-none", ALL_NONE), ("pool/skip", POOL_SKIP), ("all-conv3x3", DENSE)]
    rng = np.random.default_rng(seed)
    others = sorted(set(table) - {a for _, a in fixed})
    picks = rng.choice(len(others), size=4, replace=False)
    return fixed + [(f"random{i}", others[int(k)]) for i, k in enumerate(picks)]


def forward_backward(net: torch.nn.Module, x: torch.Tensor) -> None:
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()


def loop_ntk(net: torch.nn.Module, x: torch.Tensor) -> float:
    """TE-NAS's exact NTK: train mode, one backward per sample, gradients read from ``.grad``."""
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    out = net(x)
    rows = []
    for i in range(len(x)):
        net.zero_grad(set_to_none=True)
        out[i : i + 1].backward(torch.ones_like(out[i : i + 1]), retain_graph=i < len(x) - 1)
        rows.append(torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]))
    J = torch.stack(rows)
    ev = torch.linalg.eigvalsh((J @ J.t()).double())
    return float(ev[-1] / ev[0])


def backward_costs(net: torch.nn.Module, x: torch.Tensor) -> tuple[float, float | None]:
    """The exact NTK's floor (one forward, ``B`` backward passes) and the bound on batching those passes."""
    net = copy.deepcopy(net).train()
    B = len(x)

    def backward_s(images: torch.Tensor) -> tuple[float, float]:
        t_fwd = median([timed(lambda: net(images))[0] for _ in range(3)])
        t_fb = median([timed(lambda: forward_backward(net, images))[0] for _ in range(3)])
        return t_fwd, max(t_fb - t_fwd, 0.0)

    t_fwd, t_bwd = backward_s(x)
    bound = None
    if B <= 16:
        bound = B * t_bwd / max(backward_s(x.repeat(B, 1, 1, 1))[1], 1e-9)
    return t_fwd + B * t_bwd, bound


def time_steps(net: torch.nn.Module, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of forward+backward and of each score, interleaved so load changes hit all alike."""
    steps = {
        "fb": lambda: forward_backward(net, images),
        "ntk": lambda: ntk_condition_number(net, images, on_degenerate="worst"),
        "act": lambda: activation_score(net, images, on_degenerate="worst"),
        "jac": lambda: jacobian_score(net, images, on_degenerate="worst"),
        "all": lambda: score_all(net, images, on_degenerate="worst"),
        # the NB201 preset's scoring (exact NTK on the first few images, the others on the whole batch)
        "preset": lambda: score_all(
            net,
            images,
            ntk_mode=NB201_PRESET.search.ntk_mode,
            ntk_batch=NB201_PRESET.search.ntk_batch,
            metrics=NB201_PRESET.search.metrics,
            on_degenerate="worst",
        ),
    }
    forward_backward(net, images)  # warm-up
    t: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, fn in steps.items():
            t[k].append(timed(fn)[0])
    return {k: median(v) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the cheap steps; medians (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch, the weights and the random archs")
    ap.add_argument("--data", type=Path, default=CIFAR10_TRAIN, help="CIFAR-10 ImageFolder (default ../shared/...)")
    ap.add_argument("--csv", type=Path, default=NB201_CSV, help="NAS-Bench-201 accuracy table")
    ap.add_argument(
        "--exact-batch",
        type=int,
        default=None,
        help="batch of the exact-NTK vs loop comparison, both on the same images (default: --batch-size);\n"
        "both cost one backward pass per sample, so a smaller batch keeps a loaded machine's run short",
    )
    ap.add_argument("--no-loop", action="store_true", help="skip the exact NTK and the per-sample loop (slow)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = load_nb201(require(args.csv, "NAS-Bench-201 table", "--csv"))
    images = cifar_batch(require(args.data, "CIFAR-10 folder", "--data"), args.batch_size, args.seed)
    space = NB201Space()
    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {tuple(images.shape)}, "
        f"medians of {args.repeats}; times in seconds, ratios to one forward+backward; "
        f"exact NTK and loop at batch {args.exact_batch or args.batch_size}"
    )
    header = f"{'arch':12} {'params':>8} {'fwd+bwd':>8} {'ntk':>6} {'act':>6} {'jac':>6} {'all':>6} {'all/fb':>7}"
    header += f" {'preset/fb':>9}"
    if not args.no_loop:
        header += f" {'exact':>7} {'loop':>7} {'speedup':>7} {'cond rel.diff':>13}"
        header += f" {'exact/floor':>11} {'batch bound':>11}"
    print(header)
    ratios, preset, speedups, per_score = [], [], [], {"ntk_cond": [], "activation": [], "jacobian": []}
    to_floor, bounds = [], []
    for name, arch in choose_archs(table, args.seed):
        torch.manual_seed(args.seed)
        net = space.scoring_network(space.parse(arch))
        m = time_steps(net, images, args.repeats)
        fb = m["fb"]
        ratios.append(m["all"] / fb)
        preset.append(m["preset"] / fb)
        for key, short in (("ntk_cond", "ntk"), ("activation", "act"), ("jacobian", "jac")):
            per_score[key].append(m[short] / fb)
        line = (
            f"{name:12} {count_parameters(net):8d} {fb:8.3f} {m['ntk']:6.2f} {m['act']:6.2f} {m['jac']:6.2f} "
            f"{m['all']:6.2f} {m['all'] / fb:6.2f}x {m['preset'] / fb:8.2f}x"
        )
        if not args.no_loop:
            xe = images[: args.exact_batch or args.batch_size]
            t_exact, c_exact = timed(
                lambda: ntk_condition_number(net, xe, mode="exact", on_degenerate="worst")  # noqa: B023
            )
            t_loop, c_loop = timed(lambda: loop_ntk(copy.deepcopy(net), xe))  # noqa: B023
            speedups.append(t_loop / t_exact)
            degenerate = c_exact >= WORST_SCORE
            diff = float("nan") if degenerate else abs(c_exact - c_loop) / abs(c_loop)
            line += f" {t_exact:7.2f} {t_loop:7.2f} {t_loop / t_exact:6.2f}x {diff:13.2e}"
            floor, bound = (None, None) if degenerate else backward_costs(net, xe)
            if floor is not None:
                to_floor.append(t_exact / floor)
            if bound is not None:
                bounds.append(bound)
            line += f" {t_exact / floor:10.2f}x" if floor is not None else f" {'-':>11}"
            line += f" {bound:10.2f}x" if bound is not None else f" {'-':>11}"
        print(line, flush=True)
    result = {
        "batch_size": args.batch_size,
        "exact_batch": args.exact_batch or args.batch_size,
        "threads": torch.get_num_threads(),
        "ratio_all_median": round(median(ratios), 3),
        "ratio_all_max": round(max(ratios), 3),
        "ratio_each_median": {k: round(median(v), 3) for k, v in per_score.items()},
        "ratio_nb201_preset_median": round(median(preset), 3),
        "ntk_exact_speedup_vs_loop": round(median(speedups), 3) if speedups else None,
        "ntk_exact_speedup_min": round(min(speedups), 3) if speedups else None,
        "ntk_exact_vs_floor": round(median(to_floor), 3) if to_floor else None,
        "ntk_batched_bound": round(median(bounds), 3) if bounds else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
