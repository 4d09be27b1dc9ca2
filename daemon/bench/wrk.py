"""Load from ``wrk`` (a C load generator: far less CPU per request than any Python client,
which matters when it shares a small machine with the daemon it measures).

A generated Lua script cycles through the scenario's bodies, so the daemon
never sees the same request twice in a row, and prints wrk's own latency
percentiles and error counts as one JSON line when the run ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from .client import auth_headers
from .loadgen import LoadResult
from .scenarios import Scenario

MARKER = "BENCH_RESULT "

_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}local path = {path}
local bodies = {{
{bodies}
}}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, path, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"duration_us": %d, "requests": %d, "errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}}\\n',
    summary.duration, summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def lua_string(text: str) -> str:
    """A Lua long-bracket literal that no JSON body can terminate early."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def script(scenario: Scenario, token: str | None = None) -> str:
    bodies = ",\n".join(lua_string(b.decode()) for b in scenario.bodies)
    # Spaces inside the index brackets: "headers[[=[" would open a long string at "[[".
    headers = "".join(f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}\n" for k, v in auth_headers(token).items())
    return _SCRIPT.format(path=lua_string(scenario.path), headers=headers, bodies=bodies, marker=MARKER)


def command(base_url: str, script_path: Path, connections: int, seconds: float, threads: int) -> list[str]:
    return [
        "wrk",
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={script_path}",
        base_url.rstrip("/"),
    ]


def run(
    base_url: str, scenario: Scenario, connections: int, seconds: float, threads: int = 1, token: str | None = None
) -> LoadResult:  # fmt: skip
    # The script holds the token, if any: it lives in a directory only we may read (mkdtemp makes
    # it 0700) and only while wrk runs.
    with tempfile.TemporaryDirectory(prefix="lstm-bench-") as tmp:
        script_path = Path(tmp) / f"{scenario.name}.lua"
        script_path.write_text(script(scenario, token), encoding="utf-8")
        done = subprocess.run(
            command(base_url, script_path, connections, seconds, threads),
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            figures = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return LoadResult(
        generator="wrk",
        connections=connections,
        seconds=figures["duration_us"] / 1e6,
        requests=figures["requests"],
        errors=figures["errors"],
        p50=figures["p50_us"] / 1e6,
        p90=figures["p90_us"] / 1e6,
        p99=figures["p99_us"] / 1e6,
    )
