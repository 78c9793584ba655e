#!/usr/bin/env python3
"""Build a release artifact of evsectl (R-FW 3) and print its path.

    tools/build_release.py [--out DIR] [--with-deps [--extras pi,hmi]] [--version X]
                           [--source DIR] [--find-links DIR]... [--no-index]
                           [--platform TAG]... [--python-version X.Y]

Without ``--with-deps`` the artifact is the wheel ``evsectl-<version>-py3-none-any.whl``
(a code-only release: the charger keeps its installed dependencies). With it,
``evsectl-<version>.tar.gz`` holds that wheel and the wheels of all its
dependencies, a complete offline set; ``--platform`` (e.g.
``manylinux2014_aarch64``) with ``--python-version`` fetches the dependencies'
wheels for the charger rather than for this machine. ``--extras`` adds the wheels of
those extras of evsectl (``pi``: the Modbus, PC/SC and GPIO backends; ``hmi``: the
screen) and an ``EXTRAS`` file, so the charger installs them with the release: a rig
keeps its real drivers across an update. A dependency with no wheel on PyPI for the
target (pyscard on aarch64) must be given as a wheel with ``--find-links``.

The tree is always copied to a temporary directory first (no stale ``build/``
in the checkout, and ``--version`` rewrites ``[project] version`` and
``controller.__version__`` in the copy only). The evsectl wheel is built with
``pip wheel --no-deps --no-build-isolation`` so no network is needed for it
(setuptools and wheel must be installed). pip's output goes to stderr; the
artifact's path is the only line on stdout. The artifact is checked with
`controller.firmware.installer.inspect_artifact` before it is reported.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "node_modules", "__pycache__", "*.pyc",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "*.sqlite*",
)
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+!]{0,63}$")


class BuildError(Exception):
    pass


def copy_source(source: Path, dest: Path) -> Path:
    """Copy a source tree without VCS data, venvs, build outputs or caches."""
    shutil.copytree(source, dest, ignore=IGNORE, symlinks=True)
    return dest


def _replace_once(path: Path, pattern: str, replacement: str, flags: int = re.MULTILINE) -> None:
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, count=1, flags=flags)
    if count != 1:
        raise BuildError(f"{path}: no line matching {pattern!r}")
    path.write_text(new, encoding="utf-8")


def set_version(tree: Path, version: str) -> None:
    """Rewrite ``[project] version`` and ``controller.__version__`` in ``tree``."""
    if not VERSION_RE.match(version):
        raise BuildError(f"unusable version {version!r}")
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if section is None:
        raise BuildError(f"{pyproject}: no [project] table")
    body, count = re.subn(r'^version\s*=\s*"[^"]*"', f'version = "{version}"', section.group(1),
                          count=1, flags=re.MULTILINE)
    if count != 1:
        raise BuildError(f"{pyproject}: no version in [project]")
    pyproject.write_text(text[:section.start(1)] + body + text[section.end(1):], encoding="utf-8")
    _replace_once(tree / "controller" / "__init__.py", r"^__version__\s*=\s*[\"'][^\"']*[\"']",
                  f'__version__ = "{version}"')


def tree_version(tree: Path) -> str:
    """The version of ``tree``; both places that state it must agree."""
    project = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    init = (tree / "controller" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*[\"']([^\"']*)[\"']", init, flags=re.MULTILINE)
    if match is None or match.group(1) != project:
        raise BuildError(f"pyproject.toml says {project!r}, controller.__version__ "
                         f"{match.group(1) if match else None!r}")
    return project


def _pip(python: str, args: list[str], cwd: Path) -> None:
    cmd = [python, "-m", "pip", *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, check=False, cwd=cwd, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BuildError(f"pip {args[0]} failed (exit status {done.returncode})")


def build(source: Path = ROOT, out: Path | None = None, *, version: str | None = None,
          with_deps: bool = False, find_links: list[Path] | None = None, no_index: bool = False,
          platforms: list[str] | None = None, python_version: str | None = None,
          python: str = sys.executable, extras: list[str] | None = None) -> Path:
    """Build the artifact from ``source`` into ``out`` (default: ``<source>/dist``) and return its path."""
    out = Path(out) if out is not None else Path(source) / "dist"
    extras = [e.strip() for e in extras or [] if e.strip()]
    if extras and not with_deps:
        raise BuildError("--extras needs --with-deps (a code-only release keeps the charger's packages)")
    for extra in extras:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", extra):
            raise BuildError(f"unusable extra name {extra!r}")
    out.mkdir(parents=True, exist_ok=True)
    index_args: list[str] = ["--no-index"] if no_index else []
    for link in find_links or []:
        index_args += ["--find-links", str(Path(link).resolve())]
    with tempfile.TemporaryDirectory(prefix="evsectl-release-") as tmp:
        tree = copy_source(Path(source), Path(tmp) / "src")
        if version is not None:
            set_version(tree, version)
        version = tree_version(tree)
        wheels = Path(tmp) / "wheels"
        _pip(python, ["wheel", ".", "--no-deps", "--no-build-isolation", *index_args, "-w", str(wheels)], tree)
        ours = sorted(wheels.glob("evsectl-*.whl"))
        if len(ours) != 1:
            raise BuildError(f"expected one evsectl wheel, found {[p.name for p in ours]}")
        wheel = ours[0]
        if not with_deps:
            artifact = out / wheel.name
            shutil.copyfile(wheel, artifact)
        else:
            wanted = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
            if platforms:
                args = ["download", wanted, "-d", str(wheels), "--only-binary=:all:", *index_args]
                for platform in platforms:
                    args += ["--platform", platform]
                if python_version:
                    args += ["--python-version", python_version]
                _pip(python, args, tree)
            else:
                _pip(python, ["wheel", wanted, *index_args, "-w", str(wheels)], tree)
            artifact = out / f"evsectl-{version}.tar.gz"
            with tarfile.open(artifact, "w:gz") as tf:
                if extras:
                    listed = Path(tmp) / "EXTRAS"
                    listed.write_text("".join(f"{e}\n" for e in extras), encoding="utf-8")
                    info = tf.gettarinfo(str(listed), arcname="EXTRAS")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with open(listed, "rb") as f:
                        tf.addfile(info, f)
                for w in sorted(wheels.glob("*.whl")):
                    info = tf.gettarinfo(str(w), arcname=w.name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with open(w, "rb") as f:
                        tf.addfile(info, f)
    _verify(artifact, version)
    return artifact


def _verify(artifact: Path, version: str) -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from controller.firmware.installer import inspect_artifact

    with inspect_artifact(artifact) as art:  # also: every wheel the EXTRAS need is in the set
        if art.version != version:
            raise BuildError(f"{artifact.name} says version {art.version}, expected {version}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a release artifact of evsectl and print its path.")
    p.add_argument("--out", type=Path, help="where to put the artifact (default: <source>/dist)")
    p.add_argument("--with-deps", action="store_true", help="a tar.gz with the wheels of all dependencies")
    p.add_argument("--extras", default="",
                   help="with --with-deps: evsectl's extras to ship and install too, e.g. pi,hmi")
    p.add_argument("--version", help="build this version instead of the tree's (in a copy of the tree)")
    p.add_argument("--source", type=Path, default=ROOT, help="the source tree (default: this checkout)")
    p.add_argument("--find-links", type=Path, action="append", default=[], help="passed to pip")
    p.add_argument("--no-index", action="store_true", help="passed to pip")
    p.add_argument("--platform", action="append", default=[],
                   help="dependency wheels for this platform tag (with --with-deps)")
    p.add_argument("--python-version", help="dependency wheels for this Python (with --platform)")
    args = p.parse_args(argv)
    try:
        artifact = build(args.source, args.out, version=args.version, with_deps=args.with_deps,
                         find_links=args.find_links, no_index=args.no_index, platforms=args.platform,
                         python_version=args.python_version, extras=args.extras.split(","))
    except Exception as e:  # noqa: BLE001 - a build tool reports and exits
        print(f"build_release: {e}", file=sys.stderr)
        return 1
    print(artifact.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
