#!/usr/bin/env python3
"""Builds baton-mcp's installable packages from the workspace:

- the PyPI wheel `baton-mcp` (packaging/pypi, maturin `bin` bindings), for uvx and pipx;
- the npm packages: `@baton/mcp-<os>-<cpu>` holding the binary for one target, and `@baton/mcp`,
  the bin shim that depends on all of them optionally (npm installs the one that fits).

One run builds one target (the host's by default). A release builds each target on a machine
of its kind (or cross-compiles), publishes every platform package, then `@baton/mcp`, whose
optional dependencies name all of TARGETS at the same version.

Usage: python3 packaging/build.py [--target TRIPLE] [--profile release|dev] [--out DIR]
                                  [--wheel] [--npm]          (neither: both)
Needs cargo, maturin (the version pinned in packaging/pypi/pyproject.toml) and npm.
Prints the paths of what it built, one a line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPI = ROOT / "packaging" / "pypi"
NPM = ROOT / "packaging" / "npm"
SCOPE = "@baton"

# Rust target -> (npm os, npm cpu, npm libc). Windows binaries end in .exe.
TARGETS = {
    "x86_64-unknown-linux-gnu": ("linux", "x64", "glibc"),
    "aarch64-unknown-linux-gnu": ("linux", "arm64", "glibc"),
    "x86_64-apple-darwin": ("darwin", "x64", None),
    "aarch64-apple-darwin": ("darwin", "arm64", None),
    "x86_64-pc-windows-msvc": ("win32", "x64", None),
    "aarch64-pc-windows-msvc": ("win32", "arm64", None),
}


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    result = subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return result.stdout


def host_target() -> str:
    out = run(["rustc", "-vV"])
    return re.search(r"^host: (\S+)$", out, re.M).group(1)


def workspace_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    section = text[text.index("[workspace.package]"):]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env) if env else ROOT / "target"


def binary_path(target: str, profile: str, host: str) -> Path:
    profile_dir = "debug" if profile == "dev" else profile
    exe = "baton-mcp.exe" if "windows" in target else "baton-mcp"
    base = target_dir() if target == host else target_dir() / target
    return base / profile_dir / exe


def build_wheel(target: str, profile: str, host: str, out: Path) -> Path:
    """maturin builds the binary (cargo, --locked) and wraps it in a wheel; auditwheel picks
    the manylinux tag the binary qualifies for."""
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # Stripped: a debug build's symbols would make the package seven times larger.
    cmd = [os.environ.get("MATURIN", "maturin"), "build", "--profile", profile, "--strip", "--out", str(wheels)]
    if target != host:
        cmd += ["--target", target]
    stdout = run(cmd, cwd=PYPI)
    built = re.findall(r"(\S+\.whl)", stdout)
    candidates = [Path(p) for p in built] or sorted(wheels.glob("baton_mcp-*.whl"), key=os.path.getmtime)
    if not candidates:
        sys.exit("maturin reported no wheel")
    return candidates[-1]


def cargo_build(target: str, profile: str, host: str) -> None:
    """The binary alone, stripped as maturin's `--strip` strips it."""
    cmd = ["cargo", "rustc", "--locked", "--profile", profile, "-p", "baton-gateway", "--bin", "baton-mcp"]
    if target != host:
        cmd += ["--target", target]
    run(cmd + ["--", "-C", "strip=symbols"], cwd=ROOT)


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def npm_pack(directory: Path, out: Path) -> Path:
    stdout = run(["npm", "pack", "--json", "--pack-destination", str(out)], cwd=directory)
    return out / json.loads(stdout)[0]["filename"]


def platform_package(target: str) -> str:
    os_name, cpu, _ = TARGETS[target]
    return f"{SCOPE}/mcp-{os_name}-{cpu}"


def build_npm(target: str, binary: Path, version: str, out: Path) -> list[Path]:
    os_name, cpu, libc = TARGETS[target]
    stage = out / "npm-stage"
    shutil.rmtree(stage, ignore_errors=True)
    packs = out / "npm"
    packs.mkdir(parents=True, exist_ok=True)

    # The platform package: the binary, and fields that let npm install it only where it runs.
    name = platform_package(target)
    pdir = stage / name.split("/")[1]
    (pdir / "bin").mkdir(parents=True)
    exe = pdir / "bin" / binary.name
    shutil.copy2(binary, exe)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    manifest = {
        "name": name,
        "version": version,
        "description": f"The baton-mcp binary for {os_name}-{cpu} (installed by @baton/mcp)",
        "license": "Apache-2.0",
        "os": [os_name],
        "cpu": [cpu],
        "files": ["bin/"],
        "preferUnplugged": True,
    }
    if libc:
        manifest["libc"] = [libc]
    write_json(pdir / "package.json", manifest)
    (pdir / "README.md").write_text(f"# {name}\n\nThe `baton-mcp` binary for {os_name}-{cpu}. Install `@baton/mcp`.\n")

    # The shim package, depending (optionally, at this exact version) on every platform's.
    mdir = stage / "mcp"
    shutil.copytree(NPM / "mcp", mdir)
    main = json.loads((mdir / "package.json").read_text())
    main["version"] = version
    main["optionalDependencies"] = {platform_package(t): version for t in TARGETS}
    write_json(mdir / "package.json", main)
    return [npm_pack(pdir, packs), npm_pack(mdir, packs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="Rust target triple (default: the host's)")
    parser.add_argument("--profile", default="release", help="cargo profile (dev reuses debug builds)")
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "packages", help="output directory")
    parser.add_argument("--wheel", action="store_true", help="build the wheel")
    parser.add_argument("--npm", action="store_true", help="build the npm packages")
    args = parser.parse_args()
    both = not (args.wheel or args.npm)
    host = host_target()
    target = args.target or host
    if target not in TARGETS:
        sys.exit(f"unsupported target {target}; known: {', '.join(TARGETS)}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    version = workspace_version()
    built: list[Path] = []
    if args.wheel or both:
        built.append(build_wheel(target, args.profile, host, out))
    if args.npm or both:
        if not (args.wheel or both):
            cargo_build(target, args.profile, host)
        binary = binary_path(target, args.profile, host)
        if not binary.is_file():
            sys.exit(f"no binary at {binary}")
        built += build_npm(target, binary, version, out)
    print(f"built for {target} ({platform.system()} host)", file=sys.stderr)
    for path in built:
        print(path)


if __name__ == "__main__":
    main()
