"""The sync SDK is generated from the async one (sdk/python/unasync.py): the check that
``make lint`` runs fails on drift and on a rule that matches nothing, and the two
clients offer the same surface."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import sandbox_ide

SDK = Path(__file__).resolve().parents[2] / "sdk" / "python"


@pytest.fixture
def unasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The generator, pointed at a copy of both packages."""
    spec = importlib.util.spec_from_file_location("sdk_unasync", SDK / "unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("_async", "_sync"):
        shutil.copytree(SDK / "sandbox_ide" / name, tmp_path / name)
    monkeypatch.setattr(module, "SOURCE", tmp_path / "_async")
    monkeypatch.setattr(module, "TARGET", tmp_path / "_sync")
    monkeypatch.setattr("sys.argv", ["unasync.py", "--check"])
    yield module


def test_the_committed_sync_package_is_up_to_date(unasync: ModuleType) -> None:
    assert unasync.main() == 0


def test_drift_fails_the_check_until_regenerated(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target: Path = unasync.TARGET
    (target / "files.py").write_text((target / "files.py").read_text() + "# edited by hand\n")
    (target / "stray.py").write_text("")
    (target / "git.py").unlink()
    assert unasync.main() == 1
    assert "files.py, git.py, stray.py" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["unasync.py"])
    assert unasync.main() == 0
    monkeypatch.setattr("sys.argv", ["unasync.py", "--check"])
    assert unasync.main() == 0
    assert not (target / "stray.py").exists()


def test_a_rule_that_matches_nothing_fails(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(unasync, "RULES", [*unasync.RULES, (r"\bnever_used\b", "x")])
    assert unasync.main() == 1
    assert "never_used" in capsys.readouterr().err


def test_the_generated_code_neither_awaits_nor_names_async_types() -> None:
    for path in (SDK / "sandbox_ide" / "_sync").glob("*.py"):
        text = path.read_text()
        assert path.name in text.splitlines()[0], f"{path.name} lacks its GENERATED header"
        found = re.search(r"\bawait |\basync (def|with|for)\b|\bAsync[A-Z]|aiter_|_async_io", text)
        assert found is None, f"{found} in {path}"


def test_the_sync_and_async_clients_have_the_same_surface() -> None:
    pairs = [
        (getattr(sandbox_ide, name), getattr(sandbox_ide, name.removeprefix("Async")))
        for name in sandbox_ide.__all__
        if name.startswith("Async")
    ]
    assert len(pairs) == 12
    for async_cls, sync_cls in pairs:
        names = {n for n in dir(async_cls) if not n.startswith("_")}
        assert names == {n for n in dir(sync_cls) if not n.startswith("_")}, async_cls
        for name in names:
            a, s = getattr(async_cls, name), getattr(sync_cls, name)
            if callable(a):
                assert list(inspect.signature(a).parameters) == list(
                    inspect.signature(s).parameters
                ), f"{async_cls.__name__}.{name}"
                assert not inspect.iscoroutinefunction(s), f"{sync_cls.__name__}.{name}"
