"""
``sb3_dreamer.benchmark.update_settings``: the update that the timing scripts measure, a variant's networks included;
``scripts/inductor_kernels.py``: the kernel-by-kernel times of a graph that inductor generated;
``scripts/optimizer_steps.py``: Adam's implementations on the same parameters; ``scripts/cuda_check.sh``: the order and
outputs of the GPU checks, run with a stand-in Python; ``scripts/latent_probe.py``: DreamerV2's latents over the first
updates.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch as th
from torch._inductor.codecache import PyCodeCache

from sb3_dreamer.benchmark.update_settings import UPDATE_KEYS, minatar_update_settings
from sb3_dreamer.zoo import ALGORITHMS
from sb3_dreamer.zoo.plugin import MINATAR_IDS


def load_script(name: str) -> ModuleType:
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the networks of the packaged MinAtar settings
PACKAGED_NETWORKS = {
    "dreamerv2": dict(deter_size=200, stoch_size=20, class_size=20, part_init="part"),
    "dreamerv3": dict(model_size="size1m", image_likelihood="bernoulli"),
}


def test_timed_updates_are_the_packaged_minatar_setting():
    for algo, algorithm in ALGORITHMS.items():
        settings = minatar_update_settings(algo)
        assert set(settings) == set(UPDATE_KEYS)
        # One setting for the ten ids, and a model built with it has the packaged sizes
        assert all(minatar_update_settings(algo, env_id) == settings for env_id in MINATAR_IDS)
        model = algorithm("CnnPolicy", "Breakout-MinAtar", **settings)
        assert (model.batch_size, model.sequence_length, model.gradient_steps) == tuple(
            settings[key] for key in UPDATE_KEYS[:3]
        )
        policy_kwargs = settings["policy_kwargs"]
        assert policy_kwargs == PACKAGED_NETWORKS[algo]
        assert all(getattr(model.policy, name) == value for name, value in policy_kwargs.items())


def test_a_variants_policy_kwargs_replace_the_packaged_ones():
    # What the benchmark's variants pass on the zoo's command line: entries replaced or added, the others kept
    variant = "dict(deter_size=1024, units=128, image_likelihood='mse')"
    settings = minatar_update_settings("dreamerv3", policy_kwargs=variant)
    assert settings["policy_kwargs"] == dict(model_size="size1m", deter_size=1024, units=128, image_likelihood="mse")
    assert minatar_update_settings("dreamerv3")["policy_kwargs"] == PACKAGED_NETWORKS["dreamerv3"]
    with pytest.raises(ValueError, match="policy_kwargs must be a dict"):
        minatar_update_settings("dreamerv3", policy_kwargs="[('units', 128)]")


def test_adam_implementations_step_alike():
    script = load_script("optimizer_steps")
    parameters = [th.randn(30, 20), th.randn(20)]
    results = {name: script.time_steps(parameters, kwargs, rounds=1) for name, kwargs in script.IMPLEMENTATIONS.items()}
    moved = results["for-loop"][1]
    # 21 steps of lr 2e-4 moved every parameter, the same way in each implementation (within float32 rounding)
    assert all(not th.allclose(before, after) for before, after in zip(parameters, moved, strict=True))
    for milliseconds, stepped in results.values():
        assert milliseconds >= 0
        for expected, actual in zip(moved, stepped, strict=True):
            th.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_each_kernel_call_of_a_compiled_graph_is_timed():
    script = load_script("inductor_kernels")
    weight = th.randn(8, 6)
    known = set(PyCodeCache.modules)
    compiled = th.compile(lambda inputs: (inputs @ weight).tanh() * 2.0, dynamic=False)
    inputs = th.randn(4, 8)
    compiled(inputs)
    (graph,) = [module for module in PyCodeCache.modules if module not in known and hasattr(module, "get_args")]

    times = script.time_kernels(graph)
    for _ in range(3):
        # The timers wrap the kernels of the compiled function itself, and leave its outputs as they were
        th.testing.assert_close(compiled(inputs), (inputs @ weight).tanh() * 2.0)
    fused = [name for name in times.calls if name.startswith("cpp_fused_")]
    # The matmul is ATen's, called through extern_kernels; tanh and the product are one fused C++ kernel
    assert times.calls["extern_kernels.mm"] == 3
    assert len(fused) == 1 and times.calls[fused[0]] == 3
    assert all(seconds > 0 for seconds in times.seconds.values())


FAKE_PYTHON = """#!/bin/bash
echo "$*" >> "$CALLS"
case "$*" in
  *"import stable_baselines3"*) exit "$DEPENDENCIES_MISSING";;
  *throughput.py*) echo '{"args": "'"$*"'"}';;
  *sb3_dreamer.zoo*) run="${@: -1}/dreamerv2/Breakout-MinAtar_1"; mkdir -p "$run"
    "$REAL_PYTHON" -c "import numpy as np; np.savez('$run/evaluations.npz', timesteps=[5000], results=np.ones((1, 3)))";;
  *"import numpy"*) "$REAL_PYTHON" "$@";;
esac
"""


def run_cuda_check(tmp_path: Path, dependencies_missing: bool) -> list[str]:
    """``scripts/cuda_check.sh`` with a stand-in Python that records its calls; returns them."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = dict(os.environ, PYTHON=str(fake), CALLS=str(calls), REAL_PYTHON=sys.executable)
    env["DEPENDENCIES_MISSING"] = str(int(dependencies_missing))
    env["CUDA_WHEELS"] = str(tmp_path / "wheels")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "package-1.0-py3-none-any.whl").touch()
    root = Path(__file__).parents[1]
    out = tmp_path / "out"
    subprocess.run(["bash", "scripts/cuda_check.sh", str(out), "cpu", "1000"], cwd=root, env=env, check=True, timeout=60)
    return calls.read_text().splitlines()


def test_cuda_check_runs_each_measurement_and_keeps_their_outputs(tmp_path: Path):
    calls = run_cuda_check(tmp_path, dependencies_missing=False)
    out = tmp_path / "out"
    # Dependencies present: no wheels installed
    assert not any(call.startswith("-m pip") for call in calls)
    assert any("tests/test_cuda_path.py" in call for call in calls)
    settings = [json.loads(line)["args"] for line in (out / "throughput.jsonl").read_text().splitlines()]
    expected = [f"--batch-size {batch} --mixed-precision {precision}" for batch in (16, 50) for precision in ("false", "true")]
    assert [setting.split("--device cpu ")[1].split(" --grad-steps")[0] for setting in settings] == [
        *expected,
        "--batch-size 16 --mixed-precision true --compile-losses",
        "--algo dreamerv3 --mixed-precision true",
        "--algo dreamerv3 --mixed-precision true --compile-losses",
    ]
    (zoo,) = [call for call in calls if "sb3_dreamer.zoo" in call]
    assert "-n 1000" in zoo and "--device cpu" in zoo
    # The zoo run's evaluations kept, its folder (models, replay buffer) not
    assert np.load(out / "evaluations.npz")["timesteps"].tolist() == [5000]
    assert not (out / "zoo_run").exists()
    assert "[5000] [1.]" in (out / "cuda_check.log").read_text()


def test_cuda_check_installs_the_wheels_where_dependencies_are_missing(tmp_path: Path):
    calls = run_cuda_check(tmp_path, dependencies_missing=True)
    (install,) = [call for call in calls if call.startswith("-m pip install")]
    assert install.endswith(f"--no-index --no-deps {tmp_path}/wheels/package-1.0-py3-none-any.whl")


def test_latent_probe_reads_the_latents_over_the_first_updates():
    probe = load_script("latent_probe").probe
    # The packaged learning_starts (4000 random frames), then two train() calls of 5 updates; the logger writes at
    # the episodes' ends and at the end
    log = probe("Breakout-MinAtar", 4050)
    assert log["time/total_timesteps"].iloc[-1] == 4050
    # After 10 updates every one of the 20 latents of 20 classes is still near uniform: 20 ln 20 nats
    assert np.allclose(log[["train/posterior_entropy", "train/prior_entropy"]].iloc[-1], 20 * np.log(20), atol=0.5)
    assert (log["train/kl"] > 0).all()
    # The Bernoulli loss of a decoder at 0.5 everywhere is about 400 cells x ln 2; a bias of -4 predicts dark cells
    bernoulli = {"image_likelihood": "bernoulli"}
    first_losses = [
        probe("Breakout-MinAtar", 4025, policy_kwargs=bernoulli, decoder_bias=bias)["train/reconstruction_loss"].iloc[0]
        for bias in (None, -4.0)
    ]
    assert 0.8 * 400 * np.log(2) < first_losses[0] < 1.2 * 400 * np.log(2)
    assert first_losses[1] < 0.75 * first_losses[0]
