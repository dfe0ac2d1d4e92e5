"""Certificates for the TLS tests, made at test time with the openssl program.

Nothing here is committed: every key is generated into a temporary
directory, once per test session (EC P-256 keys: quick to make and to use).
"""

import shutil
import ssl
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None,
                                   reason="the openssl program is not installed"
                                          " (make system-deps)")

_CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = any_name
copy_extensions = copy
unique_subject = no
[any_name]
commonName = supplied
"""


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key_and_request(cwd, name, subject, san=None):
    args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject]
    if san:
        args += ["-addext", f"subjectAltName={san}"]
    _openssl(*args, cwd=cwd)


def _sign(cwd, name, *dates):
    _openssl("ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile",
             "ca.key", "-in", f"{name}.csr", "-out", f"{name}.pem", *dates, cwd=cwd)


def make_certificates(directory):
    """A CA, and certificates for ``localhost`` and 127.0.0.1.

    ``ca``: the CA's certificate (trust it to trust ``server``);
    ``server``/``server_key``: signed by the CA, valid for 30 days;
    ``expired``/``expired_key``: signed by the CA, expired in 2020;
    ``untrusted``/``untrusted_key``: self-signed, trusted by nobody;
    ``other_name``/``other_name_key``: signed by the CA for ``elsewhere.test`` only.
    """
    d = Path(directory)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    (d / "ca.cnf").write_text(_CA_CONFIG.format(dir=d))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
             "-subj", "/CN=microthreads test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    san = "DNS:localhost,IP:127.0.0.1,IP:::1"
    _key_and_request(d, "server", "/CN=localhost", san)
    _sign(d, "server", "-days", "30")
    _key_and_request(d, "expired", "/CN=localhost", san)
    _sign(d, "expired", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")
    _key_and_request(d, "other_name", "/CN=elsewhere.test", "DNS:elsewhere.test")
    _sign(d, "other_name", "-days", "30")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "untrusted.key", "-out", "untrusted.pem", "-days", "30",
             "-subj", "/CN=localhost", "-addext", f"subjectAltName={san}", cwd=d)
    paths = {"dir": d}
    for name in ("ca", "server", "expired", "other_name", "untrusted"):
        paths[name] = str(d / f"{name}.pem")
        paths[f"{name}_key"] = str(d / f"{name}.key")
    return SimpleNamespace(**paths)


def server_context(certs, name="server"):
    """A stdlib server-side context presenting certificate ``name``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(getattr(certs, name), getattr(certs, f"{name}_key"))
    return context


def client_context(certs):
    """A stdlib client-side context trusting the test CA (hostnames checked)."""
    return ssl.create_default_context(cafile=certs.ca)
