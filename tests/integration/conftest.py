"""Shared integration fixtures: the upstream simulator (real docker-registry, nginx, token and fault servers).

- `upstream`: one simulator for the whole session, token auth. Tests may add files and push images
  (use names unique to the test); they must not stop it.
- `make_upstream`: a factory for a private simulator (e.g. `make_upstream(registry_auth="basic")`),
  stopped when the test ends.
(`shared_dir`, ../shared or a skip/fail saying it is absent, is in tests/conftest.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubeplay.lab.upstream import UpstreamSimulator


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(tmp_path_factory.mktemp("upstream"), registry_auth="token") as sim:
        yield sim


@pytest.fixture
def make_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., UpstreamSimulator]]:
    started: list[UpstreamSimulator] = []

    def make(**kwargs: Any) -> UpstreamSimulator:
        sim = UpstreamSimulator(tmp_path_factory.mktemp("upstream-own"), **kwargs).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
