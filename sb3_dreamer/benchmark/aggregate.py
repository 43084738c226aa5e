"""
The report's aggregate over envs, with rliable: IQM, mean and optimality gap of the normalised scores, the probability
of improvement of each algorithm over each other one and the IQM of the normalised evaluations at each evaluation
point, each with a stratified-bootstrap interval; its section of ``results.md`` and its two plots.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from sb3_dreamer.benchmark.extras import benchmark_extra, import_rliable
from sb3_dreamer.benchmark.records import RUN_KEY
from sb3_dreamer.benchmark.stats import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    improvement_probability,
    iqm_curve,
    normalise,
    seeded_estimates,
)

with benchmark_extra():
    import pandas as pd

#: The aggregates of the report's normalised scores, with rliable's functions
AGGREGATE_METRICS = ("IQM", "mean", "optimality gap")
AGGREGATE_PLOT = "aggregate.png"
AGGREGATE_CURVES_PLOT = "aggregate_curves.png"


#: where an env's ``low`` comes from (:func:`normalisation_bounds`)
LOW_FROM_RANDOM, LOW_FROM_RUNS = "random policy", "lowest return"


def normalisation_bounds(
    scores: pd.DataFrame, results: pd.DataFrame, random_scores: pd.DataFrame | None = None
) -> pd.DataFrame:
    """
    Per env (index): ``low``, the mean return of the uniformly random policy on it where ``random_scores`` (rows of
    ``random_policy.csv``) has the env, else the lowest return that any run of ``scores``/``results`` scored on it
    (its score or any evaluation); ``high``, the best score of any run on it; ``low_from``, which of the two ``low``
    is (:data:`LOW_FROM_RANDOM`, :data:`LOW_FROM_RUNS`). A normalised score is (score - low) / (high - low).
    """
    returns = pd.concat([scores[["env", "score"]], results[["env", "mean_return"]].set_axis(["env", "score"], axis=1)])
    bounds = pd.DataFrame({"low": returns.groupby("env")["score"].min(), "high": scores.groupby("env")["score"].max()})
    bounds["low_from"] = LOW_FROM_RUNS
    if random_scores is not None:
        random_low = random_scores.set_index("env")["mean_return"].reindex(bounds.index).dropna()
        bounds.loc[random_low.index, "low"] = random_low
        bounds.loc[random_low.index, "low_from"] = LOW_FROM_RANDOM
    return bounds


#: the runs of an algorithm on an env that the default aggregate asks for: from one run per env the stratified
#: bootstrap has nothing to resample, and its intervals have no width
DEFAULT_MIN_RUNS = 2


def envs_per_algo(scores: pd.DataFrame, algos: list[str], min_runs: int = 1) -> dict[str, set[str]]:
    """Per algo of ``algos``: the envs where it has ``min_runs`` or more runs of the largest frame budget of their runs."""
    scores = scores[scores["algo"].isin(algos)]
    runs = scores[scores["frames"] == scores["frames"].max()].groupby(["algo", "env"]).size()
    return {algo: {env for (name, env), count in runs.items() if name == algo and count >= min_runs} for algo in algos}


def default_aggregate_algos(envs: dict[str, set[str]]) -> list[str]:
    """
    The algorithms of the default aggregate, given the envs of each candidate (:func:`envs_per_algo` of the packaged
    algorithms): for the envs of each candidate in turn, the candidates with runs on all of them; of these sets, the one
    that compares the most (algorithm, env) pairs (ties: more algorithms, then the first in ``envs``' order). So an
    algorithm whose runs cover a few of the others' envs (a campaign under way) is left out rather than shrinking the
    aggregate to its envs.
    """
    # The algorithms with runs on all of an algorithm's envs share exactly those envs
    covering = [([algo for algo, own in envs.items() if own >= anchor], len(anchor)) for anchor in envs.values()]
    return max(covering, key=lambda cover: (len(cover[0]) * cover[1], len(cover[0])), default=([], 0))[0]


def default_aggregate_choice(scores: pd.DataFrame, candidates: list[str]) -> tuple[list[str], int, dict[str, int]]:
    """
    The default aggregate's algorithms of ``candidates``: :func:`default_aggregate_algos` over the envs where each has
    :data:`DEFAULT_MIN_RUNS` runs or more, or one run where none has that many on an env (a one-seed grid); the runs
    per env that the choice counted (the ``min_runs`` of :func:`aggregate`); and the candidates it leaves out, each
    with its number of such envs.
    """
    min_runs = DEFAULT_MIN_RUNS
    envs = envs_per_algo(scores, candidates, min_runs)
    if not any(envs.values()):
        min_runs = 1
        envs = envs_per_algo(scores, candidates, min_runs)
    algos = default_aggregate_algos(envs)
    return algos, min_runs, {algo: len(own) for algo, own in envs.items() if algo not in algos}


@dataclass
class Aggregate:
    """The report's aggregate of the normalised scores of ``algos`` over ``envs`` (:func:`aggregate`)."""

    algos: list[str]
    envs: list[str]
    frames: int
    #: the fewest runs that each algo has on each of ``envs``
    min_runs: int
    #: bootstrap replications of the intervals
    reps: int
    #: per env: the normalisation's ``low`` (0), ``high`` (1) and ``low_from`` (:func:`normalisation_bounds`)
    bounds: pd.DataFrame
    #: per algo: its runs (rows of :func:`run_scores`, ``rank`` k for the k-th lowest seed on each env), the runs left
    #: out to have as many on every env, and per algo its normalised scores (runs, envs)
    runs: dict[str, pd.DataFrame]
    left_out: pd.DataFrame
    normalised: dict[str, np.ndarray]
    #: per algo: :data:`AGGREGATE_METRICS` and their intervals (2, metrics)
    metrics: dict[str, np.ndarray]
    intervals: dict[str, np.ndarray]
    #: per pair (X, Y), X != Y: the probability of improvement of X over Y and its interval (2,)
    improvement: dict[tuple[str, str], tuple[float, np.ndarray]]
    #: evaluation points (env frames) of every run, and per algo the IQM of the normalised evaluations at each and its
    #: interval (2, points)
    timesteps: list[int]
    curves: dict[str, np.ndarray]
    curve_intervals: dict[str, np.ndarray]


def aggregate(
    scores: pd.DataFrame,
    results: pd.DataFrame,
    algos: list[str],
    reps: int = BOOTSTRAP_REPS,
    min_runs: int = 1,
    random_scores: pd.DataFrame | None = None,
) -> Aggregate | str:
    """
    Aggregate of ``algos`` over the envs where each has ``min_runs`` runs or more of the largest frame budget of their
    runs (so that the default choice, :func:`default_aggregate_choice`, counts the envs it compared on): rliable's IQM,
    mean and optimality gap of the normalised scores (:func:`normalisation_bounds`, from the random policy's
    ``random_scores`` and every run on the env, also of other algos), the probability of improvement of each algo
    over each other one, and the IQM of the normalised evaluations at each evaluation point, each with a
    stratified-bootstrap interval of ``reps`` replications.
    rliable's score matrices need as many runs on every env: an algo's runs are cut to its lowest seeds on the env
    where it has fewest. A string says why there is no aggregate.
    """
    _, rliable_metrics, _ = import_rliable()
    missing = sorted(set(algos) - set(scores["algo"]))
    if missing:
        return f"no finished runs of {', '.join(missing)}"
    frames = int(scores[scores["algo"].isin(algos)]["frames"].max())
    envs = sorted(set.intersection(*envs_per_algo(scores, algos, min_runs).values()))
    scores, results = scores[scores["frames"] == frames], results[results["frames"] == frames]
    if not envs:
        return f"no env where each of {', '.join(algos)} has {_runs(min_runs)} of {frames:,} frames"
    in_envs = scores[scores["env"].isin(envs)], results[results["env"].isin(envs)]
    bounds = normalisation_bounds(*in_envs, random_scores).loc[envs]
    low, high = bounds["low"].to_numpy(), bounds["high"].to_numpy()
    runs, left_out, normalised, evaluations = {}, [], {}, {}
    for algo in algos:
        own = scores[(scores["algo"] == algo) & scores["env"].isin(envs)].sort_values(["env", "seed"])
        kept = own.groupby("env").head(own.groupby("env").size().min())
        left_out.append(own.drop(kept.index))
        runs[algo] = kept.assign(rank=kept.groupby("env").cumcount()).reset_index(drop=True)  # rank: k-th lowest seed
        normalised[algo] = normalise(runs[algo].pivot(index="rank", columns="env", values="score")[envs].to_numpy(), low, high)
        evaluations[algo] = results.merge(runs[algo][[*RUN_KEY, "rank"]], on=RUN_KEY)
    timesteps = sorted(
        set.intersection(*(set(steps) for algo in algos for _, steps in evaluations[algo].groupby(RUN_KEY)["timesteps"]))
    )
    # AGGREGATE_METRICS
    functions = (rliable_metrics.aggregate_iqm, rliable_metrics.aggregate_mean, rliable_metrics.aggregate_optimality_gap)
    metrics, intervals, curves, curve_intervals = {}, {}, {}, {}
    for algo in algos:
        metrics[algo], intervals[algo] = seeded_estimates(
            normalised[algo], lambda x: np.array([function(x) for function in functions]), reps
        )
        curve = evaluations[algo].pivot(index="rank", columns=["env", "timesteps"], values="mean_return")
        curve = curve.reindex(columns=pd.MultiIndex.from_product([envs, timesteps])).to_numpy()
        curve = normalise(curve.reshape(-1, len(envs), len(timesteps)), low[:, None], high[:, None])  # (runs, envs, points)
        curves[algo], curve_intervals[algo] = seeded_estimates(curve, iqm_curve, reps)
    improvement = {}
    for index, x in enumerate(algos):
        for y in algos[index + 1 :]:
            _, interval = seeded_estimates((normalised[x], normalised[y]), improvement_probability, reps)
            point = float(rliable_metrics.probability_of_improvement(normalised[x], normalised[y]))
            improvement[(x, y)] = (point, interval[:, 0])
            # P(Y > X) = 1 - P(X > Y), in every resample too
            improvement[(y, x)] = (1 - point, 1 - interval[::-1, 0])
    return Aggregate(
        algos, envs, frames, min_runs, reps, bounds, runs, pd.concat(left_out), normalised, metrics, intervals, improvement,
        timesteps, curves, curve_intervals,
    )  # fmt: skip


def _runs(min_runs: int) -> str:
    """The report's words for the runs that each algo has on an env of an aggregate: "runs" or "N runs or more"."""
    return "runs" if min_runs == 1 else f"{min_runs} runs or more"


def _set_aside_note(set_aside: dict[str, int]) -> str:
    """The aggregate section's words on the packaged algorithms that the default choice left out."""
    if not set_aside:
        return ""
    counts = ", ".join(f"{algo} ({count} env{'s' * (count != 1)})" for algo, count in set_aside.items())
    return f"; left out with such runs on fewer envs: {counts}"


def _estimate(point: float, interval: np.ndarray) -> str:
    """A point estimate and its interval (low, high), for the report."""
    return f"{point:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def aggregate_section(result: Aggregate, set_aside: dict[str, int] | None = None) -> str:
    """
    The report's section on the aggregate ``result``: how it was computed, its tables and its two plots.

    :param set_aside: the packaged algorithms that the default choice (:func:`default_aggregate_choice`) left out, each
        with its number of envs where it has the runs that the choice asks for
    """
    share = f"{CONFIDENCE:.0%}"
    used = pd.concat(result.runs.values())
    left_out = ", ".join(f"{row.algo} {row.env} seed {row.seed}" for row in result.left_out.itertuples())
    counts = ", ".join(f"{algo} {len(runs) // len(result.envs)}" for algo, runs in result.runs.items())
    if left_out:
        counts += f"; left out, to have as many runs of an algorithm on every env (its lowest seeds are kept): {left_out}"
    lines = [
        "## Aggregate over envs\n",
        f"Algorithms: {', '.join(result.algos)} (`--aggregate-algos`; by default, of the packaged algorithms with "
        "finished runs, the set that compares the most (algorithm, env) pairs over the envs where each of them has "
        f"{DEFAULT_MIN_RUNS} runs or more (from one run per env the bootstrap has nothing to resample; 1 where no "
        f"algorithm has {DEFAULT_MIN_RUNS} on an env); variants ALGO@NAME only when named"
        f"{_set_aside_note(set_aside or {})}). Envs where each has {_runs(result.min_runs)} of "
        f"{result.frames:,} frames "
        f"({len(result.envs)}): {', '.join(result.envs)}. Runs per env: {counts}. Of these {len(used)} runs, "
        f"{int((~used['final']).sum())} are scored by their last evaluation (see above).\n",
        "Normalised score: (score - low) / (high - low) per env, with high (= 1) the best score of any run on the env "
        "and low (= 0) the score of the uniformly random policy (section Random policy), or on an env without one the "
        "lowest return of any run on it, its score or any of its evaluations; every run of the report at this frame "
        "budget counts, also those of algorithms and variants outside the aggregate, so a run's normalised score does "
        "not depend on `--aggregate-algos`. A score below the random policy's is negative.\n",
        "| env | low (= 0) | low from | high (= 1) |",
        "|---|---:|---|---:|",
        *(f"| {env} | {row.low:.2f} | {row.low_from} | {row.high:.2f} |" for env, row in result.bounds.iterrows()),
        "",
        f"IQM (mean of the middle 50% of the normalised scores of all runs on all envs), mean (of the per-env means) and "
        f"optimality gap (1 - mean of min(score, 1); lower is better) by rliable, with {share} stratified-bootstrap "
        f"intervals (rliable's `get_interval_estimates`: runs resampled with replacement within each env, "
        f"{result.reps} replications, percentile intervals, NumPy's random numbers seeded with {BOOTSTRAP_SEED} "
        f"for each algorithm):\n",
        f"| algo | runs | {' | '.join(AGGREGATE_METRICS)} |",
        f"|---|---:|{'---|' * len(AGGREGATE_METRICS)}",
    ]
    for algo in result.algos:
        cells = " | ".join(_estimate(point, result.intervals[algo][:, i]) for i, point in enumerate(result.metrics[algo]))
        lines.append(f"| {algo} | {len(result.runs[algo])} | {cells} |")
    lines.append(f"\n![Aggregate metrics with {share} intervals]({AGGREGATE_PLOT})\n")
    if len(result.algos) > 1:
        lines += [
            "Probability of improvement P(X > Y) of the row's algorithm X over the column's Y (rliable's "
            "`probability_of_improvement`: on each env the probability that a run of X scores more than one of Y, ties "
            f"counting half, averaged over the envs), with {share} stratified-bootstrap intervals (each algorithm's runs "
            "resampled within each env independently of the other's; P(Y > X) = 1 - P(X > Y)):\n",
            f"| P(row > column) | {' | '.join(result.algos)} |",
            f"|---|{'---|' * len(result.algos)}",
        ]
        for x in result.algos:
            cells = " | ".join("" if x == y else _estimate(*result.improvement[(x, y)]) for y in result.algos)
            lines.append(f"| {x} | {cells} |")
        lines.append("")
    points = [f"{timesteps / 1000:g}k" for timesteps in result.timesteps]
    lines += [
        f"Sample efficiency: IQM of the normalised evaluation returns (mean over their episodes; same normalisation) at "
        f"each evaluation point, env frames, with {share} stratified-bootstrap intervals:\n",
        f"| algo | {' | '.join(points)} |",
        f"|---|{'---|' * len(points)}",
        *(
            f"| {algo} | {' | '.join(_estimate(point, result.curve_intervals[algo][:, t]) for t, point in enumerate(curve))} |"
            for algo, curve in result.curves.items()
        ),
        f"\n![IQM of the normalised evaluation returns against env frames]({AGGREGATE_CURVES_PLOT})\n",
    ]
    return "\n".join(lines)


def plot_aggregate(result: Aggregate, colors: dict[str, Any], root: Path) -> None:
    """rliable's plots of ``result``: its metrics with their intervals, and its IQM curves against env frames."""
    _, _, plot_utils = import_rliable()
    figure, _ = plot_utils.plot_interval_estimates(
        result.metrics,
        result.intervals,
        metric_names=AGGREGATE_METRICS,
        algorithms=result.algos,
        colors=colors,
        row_height=0.6,
        xlabel=f"normalised score ({len(result.envs)} envs, {result.frames:,} frames)",
        xlabel_y_coordinate=-0.4 if len(result.algos) < 3 else -0.2,
    )
    figure.savefig(root / AGGREGATE_PLOT, dpi=120, bbox_inches="tight")
    plt.close(figure)
    axis = plot_utils.plot_sample_efficiency_curve(
        result.timesteps,
        result.curves,
        result.curve_intervals,
        algorithms=result.algos,
        colors=colors,
        xlabel="env frames",
        ylabel="IQM of normalised evaluation return",
        labelsize="large",
        ticklabelsize="large",
    )
    axis.set_title(f"{len(result.envs)} envs: {', '.join(result.envs)}", fontsize="small")
    axis.legend(fontsize="small")
    axis.figure.savefig(root / AGGREGATE_CURVES_PLOT, dpi=120, bbox_inches="tight")
    plt.close(axis.figure)
