"""schemathesis against the admin API's own OpenAPI document (`/openapi.json`), with an
admin key, on a server of its own: generated requests, valid and invalid, for a bounded number
of examples and time; no answer may be a 5xx or break the schema the document gives it."""

import os
import subprocess
import sys
import tempfile

from conftest import Tollgate


def test_no_server_error_and_no_response_outside_the_document():
    binary = os.environ["TOLLGATE_BIN"]
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    with tempfile.TemporaryDirectory() as workdir:
        server = Tollgate(binary, workdir)
        try:
            origin = server.base_url.removesuffix("/v1")
            done = subprocess.run(
                [
                    schemathesis, "run", f"{origin}/openapi.json",
                    "--header", f"Authorization: Bearer {server.admin_key}",
                    "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
                    "--max-examples", "15",
                    "--max-time", "90",
                    "--seed", "20261201",
                    "--workers", "1",
                    "--request-timeout", "10",
                    "--no-shrink",
                ],
                # Its replay data goes to the temporary directory, not the checkout.
                cwd=workdir, capture_output=True, text=True, timeout=240,
            )
            assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        finally:
            server.stop()
