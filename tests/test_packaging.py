"""One distribution, one import root: graphs/, tools/, knowledge/ install under riad_agent.

The wheel test builds the real wheel, installs it into a fresh virtual environment that sees the
dependencies (but not the editable install) and imports the mapped packages from there.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"riad_agent.graphs": "graphs", "riad_agent.tools": "tools", "riad_agent.knowledge": "knowledge"}


def _declared_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def _package_of(folder: Path) -> str:
    relative = folder.relative_to(ROOT)
    top, *rest = relative.parts
    base = "riad_agent" if top == "riad_agent" else f"riad_agent.{top}"
    return ".".join([base, *rest])


def test_every_package_folder_is_declared() -> None:
    found = {
        _package_of(init.parent)
        for top in ("riad_agent", *MAPPED.values())
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = found - _declared_packages()
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    stale = _declared_packages() - found
    assert not stale, f"declared but not on disk: {sorted(stale)}"


def test_installed_package_maps_the_top_level_folders() -> None:
    import riad_agent.graphs
    import riad_agent.knowledge
    import riad_agent.tools

    for module, folder in (
        (riad_agent.graphs, "graphs"),
        (riad_agent.tools, "tools"),
        (riad_agent.knowledge, "knowledge"),
    ):
        assert module.__file__ is not None
        assert Path(module.__file__).parent.name == folder


@pytest.mark.slow
def test_wheel_installs_and_imports_mapped_packages(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheels = list(wheel_dir.glob("riad_agent-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "riad_agent/graphs/inspection.py" in names
    assert "riad_agent/knowledge/__init__.py" in names
    assert "riad_agent/tools/__init__.py" in names
    assert not any(name.startswith(("graphs/", "tools/", "knowledge/", "tests/")) for name in names)
    if (ROOT / "knowledge" / "base").is_dir() and any((ROOT / "knowledge" / "base").rglob("*.yaml")):
        assert any(name.startswith("riad_agent/knowledge/base/") and name.endswith(".yaml") for name in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    env_python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(env_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from the test environment's site-packages, added as a plain path:
    # .pth files inside it (the editable finder) are not processed, so riad_agent comes from the wheel.
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_python),
            "install",
            "--no-deps",
            "-q",
            str(wheels[0]),
        ],
        check=True,
    )
    probe = (
        "import riad_agent, riad_agent.graphs, riad_agent.tools, riad_agent.knowledge, riad_agent.schemas;"
        "print(riad_agent.__file__); print(riad_agent.graphs.__file__)"
    )
    result = subprocess.run(
        [str(env_python), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    first, second = result.stdout.split()
    assert first.startswith(purelib) and second.startswith(purelib)
    assert second.endswith("riad_agent/graphs/__init__.py")
    help_text = subprocess.run(
        [str(env_dir / "bin" / "riad"), "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "inspect" in help_text
