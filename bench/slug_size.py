"""Slug size: requirements.txt installed into a fresh virtualenv, compressed as Heroku compresses it.

    python -m bench.slug_size [--post-compile] [--venv /tmp/inkling-slug/venv --keep]

Heroku refuses a slug over 500 MB (compressed); issue #6 keeps the installed requirements
at 450 MB or less. This installs only requirements.txt (what the buildpack installs, with
.pyc files as pip writes them) into a throwaway virtualenv, runs `tar czf` over its
site-packages, and prints the size, the biggest packages compressed, and the floor.
With --post-compile it first runs bin/post_compile (as Heroku's buildpack does after the
install) and then checks that TensorFlow in that virtualenv still trains and exports both
networks (`python -m training.train` on a small slice, which compares ONNX with Keras).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR_MB = 450.0
HEROKU_LIMIT_MB = 500.0
MB = 1024 * 1024


class _Counter:
    """A write-only file that only counts bytes, so nothing big lands on disk."""

    def __init__(self):
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def compressed_size(path: Path) -> int:
    """Bytes of ``path`` as a gzip-6 tarball (what `tar czf` and Heroku's slug compiler use)."""
    counter = _Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as packed:
        with tarfile.open(fileobj=packed, mode="w|") as tar:
            tar.add(path, arcname=path.name)
    return counter.size


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def install(venv: Path, requirements: Path, python: str) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(pip + ["install", "-r", str(requirements)], check=True)
    return time.perf_counter() - started


def post_compile(venv: Path) -> None:
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(ROOT / "bin" / "post_compile")], check=True, env=env)


def check_training(venv: Path, scratch: Path) -> float:
    """Train and export both networks on a small slice with the virtualenv's TensorFlow."""
    started = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "INKLING_INSTANCE_PATH": str(ROOT / "instance")}
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "training.train", "--out", str(scratch),
                             "--epochs", "1", "--train-limit", "2000"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training with the post-compiled TensorFlow failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def app_code_size() -> int:
    """The repository's tracked files (what `git push heroku` sends), compressed."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    counter = _Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as packed:
        with tarfile.open(fileobj=packed, mode="w|") as tar:
            for name in filter(None, files.decode().split("\0")):
                if (ROOT / name).is_file():
                    tar.add(ROOT / name, arcname=name)
    return counter.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--venv", type=Path, default=None,
                        help="reuse this virtualenv if it exists (default: a fresh one in /tmp, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the virtualenv")
    parser.add_argument("--python", default=shutil.which("python3.11") or sys.executable)
    parser.add_argument("--top", type=int, default=12, help="show this many of the biggest packages")
    parser.add_argument("--post-compile", action="store_true",
                        help="run bin/post_compile after the install, as Heroku does, and check training still works")
    args = parser.parse_args()

    scratch = None
    venv = args.venv
    if venv is None:
        scratch = Path(tempfile.mkdtemp(prefix="inkling-slug-"))
        venv = scratch / "venv"
    try:
        if (venv / "bin" / "python").exists():
            print(f"reusing {venv}")
        else:
            seconds = install(venv, args.requirements, args.python)
            print(f"installed {args.requirements.name} into {venv} in {seconds:.0f} s")
        packages = site_packages(venv)
        if args.post_compile:
            post_compile(venv)
            seconds = check_training(venv, venv.parent / "post-compile-models")
            print(f"after bin/post_compile, TensorFlow still trains and exports both networks ({seconds:.0f} s)")

        started = time.perf_counter()
        tarball = venv.parent / "site-packages.tar.gz"
        subprocess.run(["tar", "czf", str(tarball), "-C", str(packages.parent), packages.name], check=True)
        total = tarball.stat().st_size
        tarball.unlink()
        return report(args, packages, total, started)
    finally:
        if scratch is not None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        elif args.keep or args.venv is not None:
            print(f"kept {venv}")


def report(args, packages: Path, total: int, started: float) -> int:
    """Print the compressed size, the biggest packages and the verdict; the exit status."""
    installed = sum(f.stat().st_size for f in packages.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"site-packages: {installed / MB:,.0f} MB installed, {total / MB:,.1f} MB compressed "
          f"(tar czf, {time.perf_counter() - started:.0f} s)")

    # Group top-level entries by size; only the big ones are worth compressing one by one.
    entries = sorted(packages.iterdir(), key=lambda p: -sum(f.stat().st_size for f in p.rglob("*")
                                                              if f.is_file()) if p.is_dir() else -p.stat().st_size)
    print("\nbiggest top-level entries (compressed):")
    shown = 0
    for entry in entries[:args.top]:
        size = compressed_size(entry)
        shown += size
        print(f"  {entry.name:<32} {size / MB:8.1f} MB  {size / total:6.1%}")
    print(f"  {'everything else':<32} {(total - shown) / MB:8.1f} MB  {(total - shown) / total:6.1%}")

    code = app_code_size()
    verdict = "PASS" if total / MB <= FLOOR_MB else "FAIL"
    print(f"\napp code (git ls-files): {code / MB:.1f} MB compressed; the slug adds the Python runtime")
    print(f"compressed install of {args.requirements.name}"
          f"{' after bin/post_compile' if args.post_compile else ''}: {total / MB:.1f} MB "
          f"(floor {FLOOR_MB:.0f} MB, Heroku's limit {HEROKU_LIMIT_MB:.0f} MB for the whole slug): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
