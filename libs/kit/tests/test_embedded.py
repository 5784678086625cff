"""The embedded host: services found by name, their settings adapted to one process and one port."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import Field

from featurelens.kit import ServiceSettings, service_config
from featurelens.kit.embedded import (
    EmbeddedHostError,
    ServiceFactory,
    discover_services,
    embedded_host,
    main,
    readable_roots,
    service_settings,
)


class EncoderLikeSettings(ServiceSettings):
    model_config = service_config("KITENCODER")

    models: list[str] = Field(default_factory=lambda: ["sentence-transformers"])
    batch_size: int = 64
    redis_url: str = ""


class DemoSettings(ServiceSettings):
    model_config = service_config("DEMO")

    encoder_address: str = "127.0.0.1:50051"
    sae_address: str = "127.0.0.1:50052"
    edge_path: Path = Path(".featurelens/qdrant")
    cache_dir: Path = Path("/var/cache/demo")
    corpus_roots: list[Path] = Field(default_factory=list)


encoder_like = ServiceFactory("encoder", EncoderLikeSettings, lambda settings: settings)
demo = ServiceFactory("demo", DemoSettings, lambda settings: settings)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """``main`` configures the root logger of the process it runs in, here the test process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("installed_kitdemo")
def test_an_installed_service_is_found_by_name_with_its_settings_class() -> None:
    [kitdemo] = discover_services(["kitdemo", "not_installed"])

    assert kitdemo.name == "kitdemo"
    assert kitdemo.settings_class.__name__ == "KitDemoSettings"
    assert issubclass(kitdemo.settings_class, ServiceSettings)


@pytest.mark.usefixtures("installed_kitdemo")
def test_a_service_whose_own_dependency_is_missing_is_a_broken_install_not_an_absent_one() -> None:
    with pytest.raises(ModuleNotFoundError, match="featurelens_no_such_dependency"):
        discover_services(["broken"])


def test_settings_come_from_the_services_variables_with_the_hosts_choices_on_top(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FEATURELENS_KITENCODER_BATCH_SIZE", "16")
    monkeypatch.setenv("FEATURELENS_KITENCODER_PORT", "7000")
    monkeypatch.setenv("FEATURELENS_REDIS_URL", "redis://127.0.0.1:6379/3")

    settings = service_settings(
        encoder_like, host="127.0.0.1", port=0, data_dir=tmp_path, models=["wordllama"]
    )

    assert isinstance(settings, EncoderLikeSettings)
    assert (settings.batch_size, settings.port, settings.models) == (16, 0, ["wordllama"])
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    monkeypatch.setenv("FEATURELENS_KITENCODER_REDIS_URL", "redis://127.0.0.1:6379/5")
    own = service_settings(encoder_like, host="127.0.0.1", port=0, data_dir=tmp_path, models=[])
    assert isinstance(own, EncoderLikeSettings)
    assert own.redis_url == "redis://127.0.0.1:6379/5"
    assert own.models == ["sentence-transformers"]


def test_hosted_services_point_at_the_host_and_local_state_moves_into_the_data_dir(tmp_path: Path) -> None:
    settings = service_settings(
        demo, host="0.0.0.0", port=6000, data_dir=tmp_path, hosted=["encoder", "demo"]
    )

    assert isinstance(settings, DemoSettings)
    assert settings.encoder_address == "127.0.0.1:6000"
    assert settings.sae_address == "127.0.0.1:50052"  # not hosted here: left to its setting
    assert settings.edge_path == tmp_path / "qdrant"
    assert settings.cache_dir == Path("/var/cache/demo")


def test_services_may_read_the_data_dir_and_working_directory_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = service_settings(demo, host="127.0.0.1", port=6000, data_dir=tmp_path, hosted=[])
    assert isinstance(settings, DemoSettings)
    assert settings.corpus_roots == [tmp_path.resolve(), Path.cwd()]

    monkeypatch.setenv("FEATURELENS_DEMO_CORPUS_ROOTS", '["/srv/corpora"]')
    settings = service_settings(demo, host="127.0.0.1", port=6000, data_dir=tmp_path, hosted=[])
    assert isinstance(settings, DemoSettings)
    assert settings.corpus_roots == [Path("/srv/corpora")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of its own for this test, with a project folder inside."""
    home = tmp_path / "home" / "user"
    (home / "project").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_started_in_a_project_folder_the_services_may_read_it_and_the_data_folder(home: Path) -> None:
    data = home / "project" / ".featurelens"

    assert readable_roots(data, cwd=home / "project") == [data.resolve(), (home / "project").resolve()]


@pytest.mark.parametrize("where", ["home", "above home", "root"])
def test_started_from_home_or_above_the_services_may_read_only_the_data_folder(
    home: Path, where: str
) -> None:
    # Every file under the home folder would hand a client the user's keys and documents.
    cwd = {"home": home, "above home": home.parent, "root": Path("/")}[where]
    data = home / ".featurelens"

    assert readable_roots(data, cwd=cwd) == [data.resolve()]


def test_started_from_home_the_hosted_services_get_only_the_data_folder(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)

    settings = service_settings(demo, host="127.0.0.1", port=6000, data_dir=Path(".featurelens"), hosted=[])

    assert isinstance(settings, DemoSettings)
    assert settings.corpus_roots == [(home / ".featurelens").resolve()]


@pytest.mark.usefixtures("installed_kitdemo")
async def test_the_host_says_which_folders_its_services_may_read_when_it_starts(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(home)
    host = embedded_host(port=0, data_dir=home / ".featurelens", services=["kitdemo"])
    ready = asyncio.Event()

    with caplog.at_level(logging.INFO, logger="featurelens.kit.embedded"):
        serving = asyncio.create_task(host.serve(on_ready=lambda server: ready.set()))
        await asyncio.wait_for(ready.wait(), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 30)

    said = [r.getMessage() for r in caplog.records if r.name == "featurelens.kit.embedded"]
    assert any(
        line.startswith("kitdemo may read the files a client names")
        and str((home / ".featurelens").resolve()) in line
        and "FEATURELENS_KITDEMO_CORPUS_ROOTS" in line
        for line in said
    )
    assert any("services read files only in the data folder, not under the working" in line for line in said)


def test_what_the_user_set_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEATURELENS_DEMO_ENCODER_ADDRESS", "gpu-box:50051")
    monkeypatch.setenv("FEATURELENS_DEMO_EDGE_PATH", "/srv/qdrant")

    settings = service_settings(demo, host="127.0.0.1", port=6000, data_dir=tmp_path, hosted=["encoder"])

    assert isinstance(settings, DemoSettings)
    assert settings.encoder_address == "gpu-box:50051"
    assert settings.edge_path == Path("/srv/qdrant")


@pytest.mark.usefixtures("installed_kitdemo")
def test_the_host_picks_a_free_port_for_port_0_and_creates_the_data_dir(tmp_path: Path) -> None:
    host = embedded_host(port=0, data_dir=tmp_path / "data", services=["kitdemo"])

    assert host.names == ["kitdemo"]
    assert host.port > 0
    assert host.settings[0].port == host.port
    assert (tmp_path / "data").is_dir()
    assert host.build_server().service_names == ["featurelens.test.KitDemoService"]


def test_a_host_without_any_installed_service_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedHostError, match=r"no featurelens services are installed .*not_installed"):
        embedded_host(data_dir=tmp_path, services=["not_installed"])


@pytest.mark.usefixtures("installed_kitdemo")
def test_an_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEATURELENS_KITDEMO_GRACE_PERIOD_S", "a while")

    with pytest.raises(EmbeddedHostError, match=r"invalid settings: (?s:.*)grace_period_s"):
        embedded_host(data_dir=tmp_path, services=["kitdemo"])


@pytest.mark.usefixtures("restore_root_logger")
def test_the_command_exits_1_when_no_service_is_installed(tmp_path: Path) -> None:
    assert main(["--port", "0", "--data-dir", str(tmp_path), "--services", "not_installed"]) == 1


@pytest.mark.usefixtures("installed_kitdemo")
def test_with_a_key_file_the_host_requires_keys_and_its_services_call_each_other_with_their_own(
    tmp_path: Path,
) -> None:
    from featurelens.kit.auth import PeerSecurity
    from featurelens.kit.peers import peer_security, set_peer_security

    (tmp_path / "keys").write_text("a-user-key-0123456789\n")
    host = embedded_host(
        port=0, data_dir=tmp_path / "data", services=["kitdemo"], api_keys_file=tmp_path / "keys"
    )
    server = host.build_server()

    assert host.peer_key is not None
    assert host.peer_key not in repr(host)
    assert server.auth.keys is not None
    assert len(server.auth.keys) == 2
    assert server.auth.refusal("/featurelens.test.KitDemoService/Any", ()) is not None
    assert (
        server.auth.refusal(
            "/featurelens.test.KitDemoService/Any", (("authorization", f"Bearer {host.peer_key}"),)
        )
        is None
    )
    assert peer_security().api_key == host.peer_key
    set_peer_security(PeerSecurity())
    assert (
        embedded_host(port=0, data_dir=tmp_path / "data", services=["kitdemo"]).build_server().auth.keys
        is None
    )


@pytest.mark.usefixtures("installed_kitdemo")
def test_the_host_refuses_a_services_own_keys_and_an_unusable_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(EmbeddedHostError, match="does not exist"):
        embedded_host(port=0, data_dir=tmp_path, services=["kitdemo"], api_keys_file=tmp_path / "missing")
    monkeypatch.setenv("FEATURELENS_KITDEMO_API_KEYS_FILE", str(tmp_path / "keys"))
    with pytest.raises(
        EmbeddedHostError, match="FEATURELENS_KITDEMO_API_KEYS_FILE is set, but the embedded host"
    ):
        embedded_host(port=0, data_dir=tmp_path, services=["kitdemo"])
