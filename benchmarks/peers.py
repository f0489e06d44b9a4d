"""The programs under test: the entrypoint as pip installs it, and the peers beside it.

The entrypoint is the console script of a throwaway virtualenv made with a
NON-editable `pip install` of the project, by the latest pip (what users run: an
editable install adds the import of its path finder to every start). Missing
peers are installed first: Debian's tini, dumb-init and supervisor with apt-get,
honcho (and matplotlib for --plot) with pip into the running interpreter's
environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import DUMB, EP, HONCHO, SUPD, TINI, clean_env, log, run_quiet

APT_PACKAGES = {"tini": "tini", "dumb-init": "dumb-init", "supervisord": "supervisor"}


@dataclass
class Peers:
    """Where every program under test is; None (and a reason in `missing`) when absent."""

    entrypoint: str
    python: str  # the throwaway venv's interpreter
    tini: str | None = None
    dumb_init: str | None = None
    supervisord: str | None = None
    honcho: list[str] | None = None
    unshare: str | None = None
    pip: str = "?"  # `pip --version` of the pip that installed the entrypoint
    console_script: str = ""  # the text of the console script it wrote
    versions: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def install_apt(binaries: list[str]) -> None:
    """apt-get install the Debian packages that provide `binaries` (update first if needed)."""
    packages = sorted({APT_PACKAGES[name] for name in binaries})
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"cannot install {', '.join(packages)}: not root, or no apt-get")
        return
    log(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    try:
        if run_quiet(install, 600, env=env).returncode != 0:
            run_quiet(["apt-get", "update", "-qq"], 600, env=env)
            result = run_quiet(install, 600, env=env)
            if result.returncode != 0:
                log(f"apt-get install failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    except subprocess.TimeoutExpired:
        log("apt-get timed out")


def install_pip(package: str, module: str) -> bool:
    """pip install `package` into this interpreter's environment unless `module` imports."""
    if importlib.util.find_spec(module) is not None:
        return True
    log(f"pip install {package} (into {sys.prefix})")
    try:
        result = run_quiet([sys.executable, "-m", "pip", "install", "-q", package], 600)
    except subprocess.TimeoutExpired:
        log(f"pip install {package} timed out")
        return False
    if result.returncode != 0:
        log(f"pip install {package} failed:\n{result.stderr[-2000:]}")
    importlib.invalidate_caches()
    return importlib.util.find_spec(module) is not None


def build_venv(tmp: Path, project: Path) -> Path:
    """A throwaway venv with `project` installed NON-editable, by the latest pip.

    A copy is installed, so that the build leaves nothing in the project's tree.
    """
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(project / name, source / name)
    shutil.copytree(
        project / "entrypoint",
        source / "entrypoint",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"building a throwaway venv: {base} -m venv; pip install --upgrade pip; pip install .")
    steps = [
        ([base, "-m", "venv", str(venv)], True),
        ([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], False),
        ([str(venv / "bin/python"), "-m", "pip", "install", "-q", str(source)], True),
    ]
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    for argv, required in steps:
        result = run_quiet(argv, 600, env=env)
        if result.returncode != 0:
            message = f"{' '.join(argv[:4])}... failed:\n{result.stderr[-3000:]}"
            if required:
                raise RuntimeError(message)
            log(message)
    return venv


def find_peers(tmp: Path, project: Path, *, plot: bool) -> Peers:
    absent = [name for name in APT_PACKAGES if not shutil.which(name)]
    if absent:
        install_apt(absent)
    venv = build_venv(tmp, project)
    peers = Peers(entrypoint=str(venv / "bin/entrypoint"), python=str(venv / "bin/python3"))
    peers.console_script = Path(peers.entrypoint).read_text()
    pip = run_quiet([peers.python, "-m", "pip", "--version"], 60, env=clean_env())
    peers.pip = " ".join(pip.stdout.split()[:2]) or "?"
    peers.tini = shutil.which("tini")
    peers.dumb_init = shutil.which("dumb-init")
    peers.supervisord = shutil.which("supervisord")
    peers.unshare = shutil.which("unshare")
    for label, path in (("tini", peers.tini), ("dumb-init", peers.dumb_init)):
        if path is None:
            peers.missing.append(f"{label}: not installed (Debian package {label})")
    if peers.supervisord is None:
        peers.missing.append("supervisord: not installed (Debian package supervisor)")
    if peers.unshare is None or os.geteuid() != 0:
        peers.missing.append("unshare: a new PID namespace needs root and util-linux's unshare")
    if install_pip("honcho", "honcho"):
        script = Path(sys.executable).parent / "honcho"
        peers.honcho = (
            [str(script)]
            if script.exists()
            else [sys.executable, "-c", "from honcho.command import main; main()"]
        )
    else:
        peers.missing.append("honcho: pip install honcho failed")
    if plot and not install_pip("matplotlib", "matplotlib"):
        peers.missing.append("matplotlib: pip install matplotlib failed (no picture)")
    peers.versions = versions(peers)
    return peers


def versions(peers: Peers) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            result = run_quiet(argv, 30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        lines = (result.stdout + result.stderr).strip().splitlines()
        return lines[0].strip() if lines else "?"

    found = {
        EP: first_line([peers.entrypoint, "--version"]),
        "python": first_line([peers.python, "--version"]),
        "pip": peers.pip,
    }
    if peers.tini:
        found[TINI] = first_line([peers.tini, "--version"])
    if peers.dumb_init:
        found[DUMB] = first_line([peers.dumb_init, "--version"])
    if peers.supervisord:
        found[SUPD] = first_line([peers.supervisord, "--version"])
    if peers.honcho:
        found[HONCHO] = first_line([*peers.honcho, "version"])
    return found
