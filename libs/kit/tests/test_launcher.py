"""``start_embedded``: the embedded host in a child process, waited for until it serves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from featurelens.kit.healthcheck import check
from featurelens.kit.launcher import HostStartError, start_embedded


def child_env(site: Path, **settings: str) -> dict[str, str]:
    """This process's environment with the test services importable and ``settings`` on top."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **settings}


def test_the_host_serves_once_started_and_stops_cleanly_when_the_block_ends(
    installed_kitdemo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "server.log"

    with start_embedded(
        data_dir=tmp_path / "data", services=["kitdemo"], env=child_env(installed_kitdemo), log_path=log
    ) as host:
        assert host.address == f"127.0.0.1:{host.port}"
        assert check("127.0.0.1", host.port, "featurelens.test.KitDemoService")

    assert host.process.returncode == 0
    text = log.read_text()
    assert f"featurelens is up at 127.0.0.1:{host.port} (kitdemo)" in text
    assert "featurelens stopped" in text
    assert (tmp_path / "data").is_dir()


def test_a_host_that_exits_while_starting_is_reported_with_its_exit_code_and_log(
    installed_kitdemo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    env = child_env(installed_kitdemo, FEATURELENS_KITDEMO_START="fail")

    with pytest.raises(HostStartError) as caught:
        with start_embedded(
            data_dir=tmp_path, services=["kitdemo"], env=env, log_path=log, log_format="text"
        ):
            pytest.fail("the block must not run")

    message = str(caught.value)
    assert "the embedded host exited with code 1 before it was ready" in message
    assert str(log) in message
    assert "the kit demo service refused to start" in message  # the log's last lines are quoted


def test_a_host_that_never_becomes_ready_is_given_up_after_the_timeout_and_stopped(
    installed_kitdemo: Path, tmp_path: Path
) -> None:
    env = child_env(installed_kitdemo, FEATURELENS_KITDEMO_START="hang")

    with pytest.raises(HostStartError, match=r"did not report SERVING at 127\.0\.0\.1:\d+ within 2 s"):
        with start_embedded(
            data_dir=tmp_path, services=["kitdemo"], env=env, log_path=tmp_path / "server.log", timeout_s=2
        ):
            pytest.fail("the block must not run")

    assert "featurelens stopped" in (tmp_path / "server.log").read_text()


def test_a_host_with_nothing_to_serve_fails_fast_naming_what_it_looked_for(tmp_path: Path) -> None:
    log = tmp_path / "server.log"

    with pytest.raises(HostStartError, match="exited with code 1") as caught:
        with start_embedded(data_dir=tmp_path, services=["not_installed"], log_path=log):
            pytest.fail("the block must not run")

    assert "featurelens.services.not_installed" in str(caught.value)
