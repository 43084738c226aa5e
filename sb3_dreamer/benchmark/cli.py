"""
Benchmark grid: algorithms x env ids x seeds, each run trained and evaluated by the RL Zoo
(``python -m sb3_dreamer.zoo train``), in parallel subprocesses, its final model then scored over
``--final-episodes`` episodes, then summarised in ROOT:

- ``results.csv``: one row per evaluation point (algo, env, seed, frames and eval_episodes of the run, timesteps =
  env frames, mean_return, std_return, wall_clock_s and cpu_s of the run: elapsed time and CPU time, user plus
  system, of its zoo process),
- ``final.csv``: one row per run (algo, env, seed, frames, final_episodes, final_mean_return and final_std_return of
  its final score, empty for a run that has none, wall_clock_s and cpu_s of its training),
- ``results.md``: per algo x env, mean +- std over seeds of the final evaluation return and of the final score (over
  the seeds that have one), frames, seeds, mean wall-clock and CPU time per run and frames per second of wall-clock
  time; then the evaluation return at every evaluation point (mean over seeds) of each algo x env; then per algo x env
  the mean score over seeds with a 95% bootstrap interval; then the aggregate over envs (below),
- ``learning_curves.png``: evaluation return against env frames, mean over seeds with a min-max band,
  one panel per env and one line per packaged algo; ``learning_curves_variants.png`` the same of the variants
  ``ALGO@NAME``, each beside its ``ALGO``, on the envs where variants ran,
- ``aggregate.png`` and ``aggregate_curves.png``: rliable's plots of the aggregate, its metrics with their intervals
  and the IQM of the normalised evaluation returns against env frames.

The score of a run is its final score (below) or, for a run without one, its last evaluation, which the report marks and
names. Per algo x env, the mean score over seeds has a percentile bootstrap interval: ``--bootstrap-reps`` (2000, 200
with ``--quick``) resamples of the seeds with replacement from a generator seeded with ``BOOTSTRAP_SEED`` (0), so that
the same runs give the same report. The aggregate (with rliable, the ``benchmark`` extra) covers ``--aggregate-algos``
over the envs where each of them has runs of the largest frame budget of their runs; by default, of the algorithms with
finished runs (no variant ``ALGO@NAME``), the set that compares the most (algorithm, env) pairs over the envs where each
has two runs or more (from one run per env the bootstrap has nothing to resample; one where no algorithm has two on an
env), so that an algorithm with runs on a few envs so far does not shrink the aggregate to them (the report names it).
It normalises each score per env: (score - low) / (high - low), with high (= 1) the best score of any run on the env and
low (= 0) the score of a uniformly random policy on it (below), or on an env without one the lowest return any run on
it scored (its score or any evaluation), over every run of the report at that budget, also those outside the
aggregate. The random policy's score: ``--final-episodes`` episodes of uniformly random actions (stable_baselines3's
``evaluate_policy``, the zoo's ``create_test_env`` without hyperparameters, the env and the action space seeded with
``FINAL_EVAL_SEED_OFFSET``), in ``ROOT/random_policy.csv``; every grid scores it on its ``--envs`` that the file lacks
before training, ``--random-policy`` does only that. rliable's score
matrices need as many runs on every env, so an algorithm's runs are cut to its lowest seeds on the env where it has
fewest (the report names those left out). On these it computes rliable's IQM, mean and optimality gap, the probability
of improvement of each algorithm over each other one (rliable's ``probability_of_improvement``; its bootstrap counts the
same without scipy's test, which would take a minute), and the IQM of the normalised evaluation returns at each
evaluation point, each with a 95% stratified-bootstrap interval (rliable's ``get_interval_estimates``: runs resampled
within each env, percentile intervals, ``--bootstrap-reps`` replications, NumPy's global random numbers, from which
rliable draws, seeded with ``BOOTSTRAP_SEED`` for each estimate).

Run ``ALGO ENV SEED`` lives in ``ROOT/runs/ALGO/ENV/seed_SEED/``: the zoo's log folder (``-f``), ``train.log`` (its
output), with ``--tensorboard`` its TensorBoard logs (``tensorboard/``, for DreamerV2 the world-model losses, actor
entropy and dream videos) and, once it has finished, ``run.json`` (its settings, wall-clock and CPU time, final score,
the machine: CPU model and bfloat16 flags, torch's version, the GPU if any; and the code: the package's version and,
from a git checkout, its commit and whether the package's files differed from it, also in ``segments.json`` for each
part of a resumed run). TensorBoard event files are not
committed (``.gitignore``): once a run with them has finished, every scalar in them goes to ``scalars.csv`` in its
folder (tag, step, value; ``scripts/tb_scalars.py`` reads it where the event files are gone), and the first run of the
packaged DreamerV2 (``dreamerv2``, not its variants: one GIF per id) of each env to finish with a dream video writes
its last one to ``ROOT/dream_dreamerv2_ENV.gif`` (``scripts/dream_gif.py``).
Every command, ``--report-only`` included, does the same
for the finished runs that have event files and no up-to-date ``scalars.csv`` or GIF (by seed: the lowest one's GIF).
The grid is resumable: runs with a ``run.json`` of at least ``--frames`` frames are skipped. A DreamerV2 run keeps a
checkpoint (``checkpoint/``, :class:`sb3_dreamer.ResumeCheckpointCallback`, every ``--checkpoint-freq`` frames, by
default a fifth of ``--eval-freq``, and at its end) and an unfinished one resumes from it through the zoo's
``-i checkpoint/model.zip``, its training and evaluation envs continuing their episodes from the checkpoint's env
state, so that it repeats the uninterrupted run: a run killed with its machine loses at most ``--checkpoint-freq``
frames of work, and a finished run given a larger ``--frames`` trains on to the new budget.
Each resumed part is a zoo log folder of its own (``dreamerv2/ENV_1``, ``ENV_2``, ...), whose evaluations are merged,
and ``segments.json`` records the time of each part (a part killed with the machine counts up to its last record,
written every minute, with ``returncode`` null). Runs of the other
algorithms restart from scratch (the zoo's ``-i`` would restart their timestep count, evaluations and schedules).
Ctrl-C or SIGTERM stops the running trainings and evaluations; the same command then picks up where the grid stopped.
``--status`` shows how far each unfinished run has come (frames, evaluations so far, recent training returns, time,
the time left at its pace), read from its files while it runs or after it was stopped.
Each run gets ``--threads`` torch threads (default cores // ``--processes``) and glibc allocator settings that keep large
tensors in the heap (``GLIBC_MALLOC_SETTINGS``, recorded in ``run.json``; with them a DreamerV2 gradient step at
batch 16 with 1 thread measured 4% and 9% faster in two sets of interleaved runs).
The final score of a run: once its training has ended, the model that the zoo saved at its end (``ENV.zip`` in the
zoo log folder of its last part) plays ``--final-episodes`` episodes (default 100) of its deterministic policy, with
stable_baselines3's ``evaluate_policy``, in a subprocess with the run's torch threads and allocator settings, on a
fresh env made by the zoo's ``create_test_env`` from the run's saved settings (for the MinAtar ids the zoo's eval env:
``gym.make`` in a Monitor), with the env, torch and numpy seeded with the run's seed + ``FINAL_EVAL_SEED_OFFSET``
(the zoo's training and evaluation envs have the run's seed). ``run.json`` records its mean and std (population) of
the returns, episodes, seed and wall-clock and CPU time (final_mean_return, final_std_return, final_episodes,
final_eval_seed, final_eval_s, final_eval_cpu_s); its wall_clock_s and cpu_s are the training's alone. A run whose
final evaluation fails or is interrupted writes no ``run.json``: it is not finished. ``--final-eval-missing`` trains
nothing: it scores the finished runs under ROOT that have no final score (finished before it existed) and whose model
is still on disk, adds the fields to their ``run.json`` and rebuilds the report; runs whose model is gone stay without.
The report covers every finished run under ROOT, so a grid can be run in parts (e.g. fewer seeds of dreamerv2),
and keeps the rows of ``results.csv`` and ``final.csv`` whose run folder is gone: the CSVs are the lasting record of
every run (``final.csv`` gets a row without a final score for a run known only from ``results.csv``); delete its rows
from both to drop a run from the report.

With ``--ray [ADDRESS]``, each run (or final score of ``--final-eval-missing``) is a task of the Ray cluster at ADDRESS
(``auto``: the one ``ray start`` began on this machine), or with no ADDRESS of a new local one of ``--processes`` x
``--threads`` CPUs, that asks for ``--threads`` CPUs (and a GPU with ``--device cuda``) and does on its node what the
local process pool does, into ROOT, which every node must reach (a shared file system; docs/cluster.md). Ray is the
``ray`` extra.

``--eval-freq`` is in env frames: the zoo divides it by the number of envs. MinAtar has no frame skip.
Every algorithm reads the plug-in's packaged ``hyperparams/ALGO.yml`` (``sb3_dreamer/zoo/hyperparams``).

A variant ``ALGO@NAME`` in ``--algos`` is ALGO with the hyperparameters given by ``--algo-hyperparams ALGO@NAME ...``
on top of ALGO's own: it has its own runs folder and its own rows in the report, e.g. a smaller batch or a
DreamerV3-style option compared with the defaults. ``--algo-conf ALGO@NAME FILE`` gives it another hyperparameter file
than ALGO's packaged one (the zoo's ``-conf FILE``), e.g. the official DreamerV2's choices against the packaged ones.

Usage:
  python scripts/benchmark.py --algos dreamerv2 ppo dqn qrdqn --envs Breakout-MinAtar BreakoutPOMDP-MinAtar \\
      --seeds 0 1 2 --frames 100000 --eval-freq 10000 --eval-episodes 10 --processes 2 --root benchmarks/minatar-100k
  python scripts/benchmark.py --algos dreamerv2 dreamerv2@batch16 --algo-hyperparams dreamerv2@batch16 batch_size:16 \\
      --envs Breakout-MinAtar --seeds 0 --root /tmp/bench
  python scripts/benchmark.py --algos dreamerv2@official --algo-conf dreamerv2@official \
      sb3_dreamer/zoo/hyperparams/dreamerv2_official.yml --envs Breakout-MinAtar --seeds 0 1 --root benchmarks/minatar-100k
  python scripts/benchmark.py --quick --algos dreamerv2 dqn --envs Breakout-MinAtar --seeds 0 --root /tmp/bench
  python scripts/benchmark.py --ray HEAD:6379 --threads 1 --algos dreamerv2 ppo --envs Breakout-MinAtar --seeds 0 1 2 \\
      --root /shared/bench
  python scripts/benchmark.py --final-eval-missing --root benchmarks/minatar-100k
  python scripts/benchmark.py --report-only --root benchmarks/minatar-100k
  python scripts/benchmark.py --status --root benchmarks/minatar-100k
  python scripts/benchmark.py --random-policy --envs {Asterix,Breakout}-MinAtar --root benchmarks/minatar-100k
  python scripts/benchmark.py --report-only --root benchmarks/minatar-100k --aggregate-algos dreamerv2@ratio2bf16 qrdqn
  python scripts/benchmark.py --relabel dreamerv3 dreamerv3@mse --root benchmarks/minatar-100k
"""

import argparse
import os
from pathlib import Path

import matplotlib

from sb3_dreamer.benchmark.export import export_finished_runs
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET, run_grid, score_missing
from sb3_dreamer.benchmark.layout import Run, base_algo
from sb3_dreamer.benchmark.quick import FULL_BUDGET, QUICK_BOOTSTRAP_REPS, QUICK_BUDGET
from sb3_dreamer.benchmark.random_policy import update_random_scores
from sb3_dreamer.benchmark.relabel import relabel_runs
from sb3_dreamer.benchmark.stats import BOOTSTRAP_REPS
from sb3_dreamer.zoo.plugin import ALGORITHMS, HYPERPARAMS_DIR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; ``--quick`` changes the defaults of the budget options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["dreamerv2", "ppo", "dqn", "qrdqn"])
    parser.add_argument("--envs", nargs="+", default=["Breakout-MinAtar", "BreakoutPOMDP-MinAtar"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--seeds-per-algo", nargs="+", default=[], metavar="ALGO=N", help="run only the first N of --seeds for ALGO"
    )
    parser.add_argument("--frames", type=int, help=f"env frames per run (default {FULL_BUDGET[0]}, quick {QUICK_BUDGET[0]})")
    parser.add_argument("--eval-freq", type=int, help=f"env frames between evaluations (default {FULL_BUDGET[1]})")
    parser.add_argument("--eval-episodes", type=int, help=f"episodes per evaluation (default {FULL_BUDGET[2]})")
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        help="env frames between two checkpoints of a DreamerV2 or DreamerV3 run (default: a fifth of --eval-freq)",
    )
    parser.add_argument(
        "--final-episodes",
        type=int,
        help=f"episodes of the final score of a run (default {FULL_BUDGET[3]}, quick {QUICK_BUDGET[3]})",
    )
    parser.add_argument("--processes", type=int, default=2, help="runs in parallel (with --ray: on a new local cluster)")
    parser.add_argument(
        "--threads", type=int, help="torch threads of each run, and its CPUs on Ray (default: cores // --processes)"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="each run a task of the Ray cluster at ADDRESS ('auto': the one ray start began here), or with no ADDRESS "
        "of a new local one; --root must be a path every node reaches (the ray extra)",
    )
    parser.add_argument("--root", type=Path, default=Path("benchmarks/minatar-100k"))
    parser.add_argument("--device", default="auto", help="--device of the zoo")
    parser.add_argument("--tensorboard", action="store_true", help="TensorBoard logs of each run in RUN/tensorboard")
    parser.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY:VALUE", help="zoo --hyperparams, all algos")
    parser.add_argument(
        "--algo-hyperparams",
        nargs="+",
        action="append",
        default=[],
        metavar="ALGO KEY:VALUE",
        help="zoo --hyperparams for one algo or variant ALGO@NAME (repeatable), e.g. --algo-hyperparams ppo n_envs:4",
    )
    parser.add_argument(
        "--algo-conf",
        nargs=2,
        action="append",
        default=[],
        metavar=("ALGO", "FILE"),
        help="the zoo's -conf FILE (a hyperparameter file) for one algo or variant ALGO@NAME (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets and models, for tests")
    parser.add_argument(
        "--aggregate-algos",
        nargs="+",
        metavar="ALGO",
        help="algorithms and variants ALGO@NAME of the report's aggregate over envs (default: of the algorithms with "
        "finished runs, no variant, the set that compares the most (algorithm, env) pairs over the envs where each has "
        "two runs or more)",
    )
    parser.add_argument(
        "--bootstrap-reps",
        type=int,
        help=f"bootstrap replications of the report's intervals (default {BOOTSTRAP_REPS}, quick {QUICK_BOOTSTRAP_REPS})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the report, and the scalars.csv and dream GIFs of the finished runs, from the finished runs",
    )
    mode.add_argument(
        "--status",
        action="store_true",
        help="train nothing: show how far the unfinished runs under --root have come (frames, evaluations, recent "
        "training returns, time), while they run or after they were stopped",
    )
    mode.add_argument(
        "--random-policy",
        action="store_true",
        help="train nothing: score a uniformly random policy over --final-episodes episodes on each of --envs that "
        "ROOT/random_policy.csv lacks (every grid does this for its envs), then rebuild the report",
    )
    mode.add_argument(
        "--final-eval-missing",
        action="store_true",
        help="train nothing: score the finished runs under --root without a final score whose model is on disk, "
        "then rebuild the report",
    )
    mode.add_argument(
        "--relabel",
        nargs=2,
        metavar=("SOURCE", "TARGET"),
        help="train nothing: give the finished runs of SOURCE under --root the name TARGET (folders, run.json, the rows "
        "of the CSVs), e.g. a variant's runs when it becomes the packaged setting, then rebuild the report",
    )
    args = parser.parse_args(argv)
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    for name, default in zip(("frames", "eval_freq", "eval_episodes", "final_episodes"), budget, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.checkpoint_freq is None:
        args.checkpoint_freq = max(args.eval_freq // 5, 1)
    if args.checkpoint_freq < 1:
        parser.error(f"--checkpoint-freq must be a positive number of env frames, got {args.checkpoint_freq}")
    if args.bootstrap_reps is None:
        args.bootstrap_reps = QUICK_BOOTSTRAP_REPS if args.quick else BOOTSTRAP_REPS
    args.root = args.root.resolve()
    # The grid's nice value, which its runs' scheduling groups get on every node (Ray's workers have their own)
    args.niceness = os.nice(0)
    if args.threads is None:
        args.threads = max(1, len(os.sched_getaffinity(0)) // args.processes)
    try:
        args.seeds_per_algo = {algo: int(count) for algo, count in (item.split("=") for item in args.seeds_per_algo)}
    except ValueError:
        parser.error("--seeds-per-algo takes ALGO=N items")
    check_hyperparams(parser, args)
    args.algo_conf = {algo: Path(path).resolve() for algo, path in args.algo_conf}
    for algo, path in args.algo_conf.items():
        if not path.is_file():
            parser.error(f"--algo-conf {algo}: no file {path}")
    missing = sorted({base_algo(algo) for algo in args.algos} - set(ALGORITHMS))
    missing = [algo for algo in missing if not (HYPERPARAMS_DIR / f"{algo}.yml").is_file()]
    if missing and not (args.report_only or args.final_eval_missing or args.status or args.random_policy or args.relabel):
        parser.error(f"no hyperparameter file {', '.join(str(HYPERPARAMS_DIR / f'{algo}.yml') for algo in missing)}")
    return args


def check_hyperparams(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with the problem where a ``--hyperparams`` item is no KEY:VALUE, or an ``--algo-hyperparams`` group's is."""
    items = [("--hyperparams", item, "") for item in args.hyperparams]
    for algo, *group in args.algo_hyperparams:
        if ":" in algo:
            parser.error(f"--algo-hyperparams takes ALGO (or ALGO@NAME), then KEY:VALUE items: got {algo!r} first")
        if not group:
            parser.error(f"--algo-hyperparams {algo} has no KEY:VALUE items")
        items += [(f"--algo-hyperparams {algo}", item, " (give each algorithm its own --algo-hyperparams)") for item in group]
    for option, item, hint in items:
        key, _, value = item.partition(":")
        if not (key and value):
            parser.error(f"{option}: {item!r} is no KEY:VALUE item{hint}")


def main(argv: list[str] | None = None) -> None:
    """
    Score the random policy on the grid's envs where not yet done, train the grid (``--final-eval-missing``: score the
    unscored runs instead; ``--random-policy``: only the random policy; ``--relabel``: rename an algorithm's runs;
    ``--report-only``: nothing), then report.
    """
    args = parse_args(argv)
    # Before any training: the report needs the benchmark extra (pandas), and its plots no display
    matplotlib.use("Agg")
    from sb3_dreamer.benchmark.report import write_report

    if args.status:
        from sb3_dreamer.benchmark.status import status_table

        print(status_table(args.root))
        return
    if args.relabel:
        try:
            moved = relabel_runs(args.root, *args.relabel)
        except ValueError as error:
            raise SystemExit(f"--relabel: {error}") from None
        print(f"{len(moved)} runs of {args.relabel[0]} are now {args.relabel[1]}'s", flush=True)
    failed = []
    try:
        if not (args.report_only or args.final_eval_missing or args.relabel):
            update_random_scores(args.root, args.envs, args.final_episodes, seed=FINAL_EVAL_SEED_OFFSET)
        if args.final_eval_missing:
            failed = score_missing(args)
        elif not (args.report_only or args.random_policy or args.relabel):
            runs = [
                Run(algo, env, seed)
                for algo in args.algos
                for env in args.envs
                for seed in args.seeds[: args.seeds_per_algo.get(algo, len(args.seeds))]
            ]
            failed = run_grid(args, runs)
    except KeyboardInterrupt:
        print("interrupted: the running subprocesses were stopped; run the same command again to resume", flush=True)
        raise SystemExit(130) from None
    export_finished_runs(args.root)
    write_report(args.root, args.aggregate_algos, args.bootstrap_reps)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed: {', '.join(map(str, failed))}")
