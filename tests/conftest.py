import pytest

pytest_plugins = ["lab.pytest_plugin"]


@pytest.fixture
def qemu_without_cpu_quirks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Golden command lines and domain XML are the same on every host: each QEMU binary is
    taken to be a release with no TCG CPU quirk (lab.profiles.TCG_CPU_QUIRKS)."""
    from lab import profiles

    monkeypatch.setattr(profiles, "installed_qemu_version", lambda binary: (10, 0))
