"""ripple.js as a package: ``npm pack`` makes an installable tarball, its TypeScript types check, and the console
serves the very same file."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.conftest import CLIENT_JS, node_or_skip
from tests.conftest import ROOT


def test_npm_pack_makes_an_installable_package(tmp_path: Path) -> None:
    """``npm pack`` gives a tarball with the module, its types and README; installed, it imports by its name."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: apt-get install npm (see .ci/install-extras)")
    packed = subprocess.run([npm, "pack", "--json", "--pack-destination", str(tmp_path)], cwd=CLIENT_JS,
                            capture_output=True, text=True, timeout=120)
    assert packed.returncode == 0, packed.stderr
    (info,) = json.loads(packed.stdout)
    assert sorted(f["path"] for f in info["files"]) == ["README.md", "package.json", "ripple.d.ts", "ripple.js"]
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    tarball = str(tmp_path / info["filename"])
    installed = subprocess.run([npm, "install", "--offline", "--no-audit", "--no-fund", tarball], cwd=project,
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    script = ("import {subscribe, client, RippleError, VERSION} from 'ripple-client';"
              "console.log(typeof subscribe, typeof client, typeof RippleError, VERSION)")
    ran = subprocess.run([node_or_skip(), "--input-type=module", "-e", script], cwd=project, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    version = json.loads((CLIENT_JS / "package.json").read_text())["version"]
    assert ran.stdout.split() == ["function", "function", "function", version]


def test_typescript_types_check() -> None:
    tsc = CLIENT_JS / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.skip("TypeScript is not installed in clients/js: run .ci/install-extras (npm ci --prefix clients/js)")
    done = subprocess.run([str(tsc), "--noEmit", "-p", "test/tsconfig.json"], cwd=CLIENT_JS, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_console_serves_the_same_ripple_js() -> None:
    """One source: the console's copy of ripple.js (inside the Python package) is clients/js/ripple.js."""
    assert (ROOT / "ripple" / "console" / "ripple.js").read_bytes() == (CLIENT_JS / "ripple.js").read_bytes(), (
        "copy clients/js/ripple.js to ripple/console/ripple.js"
    )
