"""`make install EXTRAS=`: the service's install, without the tests' and developers' tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The top-level modules of the optional dependencies (pyproject.toml: test, dev).
OPTIONAL = ["pytest", "_pytest", "pytest_cov", "hypothesis", "playwright", "scim2_tester"]
OPTIONAL += ["ruff", "mypy"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("arguments", "requirement"),
    [([], "'.[test,dev]'"), (["EXTRAS="], "'.'")],
    ids=["default", "service"],
)
def test_make_install_installs_the_extras_asked_for(arguments: list[str], requirement: str) -> None:
    """README (systemd): the service is installed without the test and development tools
    (playwright alone, with its Node.js, is 165 MB: 70 MB rather than 370 for .venv)."""
    dry_run = subprocess.run(
        ["make", "--always-make", "--dry-run", "install", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert f"pip install --quiet -c constraints.txt -e {requirement}\n" in dry_run.stdout


def test_the_service_starts_and_answers_without_the_optional_dependencies(
    tmp_path: Path,
) -> None:
    """What `make install EXTRAS=` leaves out is never imported by the service."""
    script = textwrap.dedent(
        f"""
        import sys
        from importlib.abc import MetaPathFinder

        class Absent(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {OPTIONAL!r}:
                    raise ImportError(f"{{name}} is not installed")
                return None

        sys.meta_path.insert(0, Absent())
        from app import create_app, main
        from server.config import load_settings
        from pathlib import Path
        config = Path({str(tmp_path / "proware.toml")!r})
        config.write_text('[storage]\\npath = "data"\\n')
        assert main(["--config", str(config), "token", "create", "--name", "entra"]) == 0
        app = create_app(load_settings(config))
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/admin/sign-in").status_code in (200, 302)
        app.extensions["proware"].repository.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
