"""The daemon's install has no TensorFlow: every runtime module must import and start without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_AND_IMPORT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = {"tensorflow", "keras", "tf2onnx", "onnx", "matplotlib", "statsmodels"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    import lstm_predictor.daemon as daemon

    for info in pkgutil.walk_packages(daemon.__path__, "lstm_predictor.daemon."):
        importlib.import_module(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED | {"pandas"})
    print("leaked:", leaked)
    assert not leaked, leaked

    from click.testing import CliRunner
    from lstm_predictor.cli import main

    for command in ("serve", "predict", "bench", "service"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, (command, result.output, result.exception)
    result = CliRunner().invoke(main, ["convert", "--help"])
    assert result.exit_code != 0 and "needs the train extra" in result.output, result.output
    print("ok")
    """
)


def test_runtime_modules_import_and_commands_start_with_tensorflow_unimportable() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCK_AND_IMPORT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
