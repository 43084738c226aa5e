"""The linear probes of the benchmark's diagnostics."""

import numpy as np
import pytest

from sb3_dreamer.benchmark.probes import linear_probe_auc


def test_linear_probe_separates_a_linear_event_and_not_noise():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 5))
    assert linear_probe_auc(features, features[:, 2] - 0.5 * features[:, 4] > 0.3) > 0.98
    assert 0.4 < linear_probe_auc(features, rng.random(600) < 0.3) < 0.6
    # Held out: the second half's labels are never seen, so features that memorise the first half's tell nothing
    labels = rng.random(600) < 0.5
    memorised = np.eye(600)[:, :300] * labels[:, None]
    assert 0.4 < linear_probe_auc(memorised, labels) < 0.6


def test_linear_probe_errors_and_missing_labels():
    with pytest.raises(ValueError, match=r"features \(n, d\) and labels \(n,\)"):
        linear_probe_auc(np.zeros((4, 2)), np.zeros(3, dtype=bool))
    for labels in ([True, False, False, False], [False, False, True, False]):
        assert np.isnan(linear_probe_auc(np.arange(8.0).reshape(4, 2), np.array(labels)))
