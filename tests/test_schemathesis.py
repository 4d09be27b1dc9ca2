"""Schema fuzzing: schemathesis reads the real daemon's own /openapi.json and sends every
operation requests generated from it, valid and invalid (its examples, coverage and fuzzing
phases), then checks each answer against the document. Any 5xx, or any status, media type,
header or body the document does not describe, fails the test; so does a request the
document calls invalid that the daemon accepts.

Not checked: that every schema-valid request is accepted (``positive_data_acceptance``). The
document cannot say that ``prices`` must hold exactly the model's look_back closes (models
differ), so a schema-valid body of the wrong length is rightly a 422.
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from pathlib import Path

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
)
# Path parameters that name what api_daemon serves, so that requests reach past the 404s; and
# the refusals of a request the document calls invalid, among them 413 (a generated body may be
# larger than api_daemon's 16 KiB limit), which schemathesis does not count by default.
CONFIG = """\
[parameters]
"path.name" = "TINY3.SA"
"path.version" = "1"
"path.filename" = "swagger-ui.css"

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "404", "405", "413", "422"]
"""
MAX_EXAMPLES = 25  # per operation and phase


def test_every_operation_answers_generated_requests_as_the_document_says(api_daemon, tmp_path: Path):
    paths = api_daemon.get("/openapi.json").json()["paths"]
    # Every operation but GET /openapi.json itself, which schemathesis leaves out as the schema's own URL.
    operations = sum(len(item) for path, item in paths.items() if path != "/openapi.json")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    command = [
        str(Path(sysconfig.get_path("scripts")) / "st"), "--config-file", str(config), "--no-color",
        "run", f"{api_daemon.url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "1",
        "--generation-database", "none",
        "--workers", "1",
        "--request-timeout", "30",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert re.search(rf"Tested:\s+{operations}\b", run.stdout), report
