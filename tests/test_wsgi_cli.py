"""python -m microthreads.wsgi MODULE:APP: the command line, in a subprocess."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from wsgi_helpers import LIMIT

requests = pytest.importorskip("requests")

TESTS = Path(__file__).parent


def start(*args):
    """The server in a subprocess (cwd tests/); ``(process, base url)`` once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "microthreads.wsgi", *args, "--bind", "127.0.0.1:0"],
        cwd=TESTS, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"serving \S+ on (\S+)", line)
        if match:
            return process, match.group(1).replace("localhost", "127.0.0.1")
    process.wait(LIMIT)
    pytest.fail(f"the server did not start: {''.join(lines)}")


def stop(process):
    """SIGTERM, then its exit status (it stops gracefully)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def test_the_command_line_serves_the_named_app_and_stops_on_sigterm():
    process, url = start("wsgi_apps.plain:application")
    try:
        response = requests.get(url + "/", timeout=LIMIT)
        assert response.status_code == 200
        assert response.text.startswith("patched=False ")
    finally:
        assert stop(process) == 0


def test_patch_patches_before_the_app_is_imported_and_a_factory_is_called():
    process, url = start("wsgi_apps.plain:make_app()", "--patch")
    try:
        assert requests.get(url + "/", timeout=LIMIT).text.startswith("patched=True ")
    finally:
        assert stop(process) == 0


def test_certfile_and_keyfile_serve_https_that_requests_verifies(certs):
    process, url = start("wsgi_apps.plain:application", "--certfile", certs.server,
                         "--keyfile", certs.server_key)
    try:
        assert url.startswith("https://")
        response = requests.get(url + "/", timeout=LIMIT, verify=certs.ca)
        assert response.text.endswith("scheme=https")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/", timeout=LIMIT)          # the system's CAs do not know it
    finally:
        assert stop(process) == 0


def test_plain_http_to_the_https_port_gets_a_400_naming_the_https_address(certs):
    process, url = start("wsgi_apps.plain:application", "--certfile", certs.server,
                         "--keyfile", certs.server_key)
    try:
        response = requests.get(url.replace("https://", "http://") + "/", timeout=LIMIT)
        assert response.status_code == 400
        assert response.text == f"400 Bad Request: this port speaks HTTPS: use {url}/\n"
        assert requests.get(url + "/", timeout=LIMIT, verify=certs.ca).status_code == 200
    finally:
        assert stop(process) == 0


def test_an_app_that_cannot_be_found_is_an_error_naming_it():
    result = subprocess.run([sys.executable, "-m", "microthreads.wsgi", "wsgi_apps.plain:nope"],
                            cwd=TESTS, capture_output=True, text=True, timeout=LIMIT,
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    assert result.returncode != 0 and "'nope'" in result.stderr


def _fails(*args, env=None):
    """The command line run to its end: ``(exit status, stderr)``."""
    result = subprocess.run([sys.executable, "-m", "microthreads.wsgi", *args], cwd=TESTS,
                            capture_output=True, text=True, timeout=LIMIT,
                            env={**os.environ, "PYTHONPATH": str(TESTS.parent), **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr


def test_an_address_in_use_is_one_error_line_and_status_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = _fails("wsgi_apps.plain:application", "--bind", f"127.0.0.1:{port}")
    assert status == 1
    assert f"ERROR microthreads.wsgi: cannot serve on 127.0.0.1:{port}: Address already in use" \
        in stderr


def test_an_unusable_certificate_or_runtime_variable_is_one_error_line_and_status_2(tmp_path):
    missing = str(tmp_path / "missing.pem")
    status, stderr = _fails("wsgi_apps.plain:application", "--bind", "127.0.0.1:0",
                            "--certfile", missing, "--keyfile", missing)
    assert status == 2
    assert f"cannot use --certfile {missing} --keyfile {missing}: No such file" in stderr
    status, stderr = _fails("wsgi_apps.plain:application", "--bind", "127.0.0.1:0",
                            env={"MICROTHREADS_POLLER": "bogus"})
    assert status == 2
    assert "environment variable MICROTHREADS_POLLER='bogus' is not one of" in stderr
