"""The digits as event-camera streams: binary, deterministic, aligned with digits_split, sparse,
time-varying, and informative enough for a linear classifier."""
from __future__ import annotations

import numpy as np
import pytest

from neurocompile.datasets import digits_to_events, event_digits_split


@pytest.fixture(scope="module")
def events():
    return event_digits_split()


def test_shape_dtype_binary(events, digits):
    for x, images in ((events.train_x, digits.train_x), (events.test_x, digits.test_x)):
        assert x.shape == (len(images), 8, 2, 10, 10)
        assert x.dtype == np.uint8
        assert set(np.unique(x)) == {0, 1}
    assert "DVS events" in events.describe()


def test_steps_and_canvas_options(digits):
    few = digits.test_x[:5]
    assert digits_to_events(few, steps=12).shape == (5, 12, 2, 10, 10)
    assert digits_to_events(few, pad=0).shape == (5, 8, 2, 8, 8)
    with pytest.raises(ValueError):
        digits_to_events(few, steps=2)


def test_deterministic(events):
    again = event_digits_split()
    assert np.array_equal(events.train_x, again.train_x)
    assert np.array_equal(events.test_x, again.test_x)


def test_same_samples_labels_and_order_as_digits_split(events, digits):
    assert np.array_equal(events.train_y, digits.train_y)
    assert np.array_equal(events.test_y, digits.test_y)
    # The events are a function of each image alone: converting one image reproduces its row.
    for i in (0, 1, 17, 200, len(digits.test_x) - 1):
        assert np.array_equal(digits_to_events(digits.test_x[i:i + 1])[0], events.test_x[i])
    assert np.array_equal(digits_to_events(digits.train_x[:50]), events.train_x[:50])


def test_no_change_no_events():
    blank = np.zeros((1, 1, 8, 8), dtype=np.int64)
    assert digits_to_events(blank).sum() == 0


def test_sparse_both_polarities_and_time_varying(events):
    x = events.train_x
    # Measured: 14.2 % ones, 228 events per sample (143..298), 51 % of them ON.
    assert 0.05 < x.mean() < 0.30
    per_sample = x.reshape(len(x), -1).sum(axis=1)
    assert per_sample.min() > 0
    assert (x[:, :, 0].sum(axis=(1, 2, 3)) > 0).all() and (x[:, :, 1].sum(axis=(1, 2, 3)) > 0).all()
    assert 0.3 < x[:, :, 0].sum() / x.sum() < 0.7
    # Not one frame repeated: consecutive steps differ (measured: in every sample, every step).
    repeated = (x[:, 1:] == x[:, :-1]).all(axis=(2, 3, 4))
    assert repeated.mean() < 0.05
    assert (x.mean(axis=(0, 2, 3, 4)) > 0).all()  # every step carries events


def test_linear_classifier_reads_the_class(events):
    from sklearn.linear_model import LogisticRegression

    def counts(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1).reshape(len(x), -1)

    clf = LogisticRegression(max_iter=1000).fit(counts(events.train_x), events.train_y)
    assert clf.score(counts(events.test_x), events.test_y) >= 0.9  # measured 0.947
