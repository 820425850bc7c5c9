"""Throwaway TLS material for tests: a private CA and a server certificate for
``localhost`` / ``127.0.0.1`` / ``::1``, made at test time with the ``openssl`` CLI.

Nothing here is trusted anywhere else: the files live in a temporary directory,
the certificates are valid for two days, and the system's OpenSSL configuration
is not read (each step gets its own minimal config).
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_NAMES = "DNS:localhost,IP:127.0.0.1,IP:::1"

_CA_CONFIG = """\
[req]
prompt = no
distinguished_name = dn
x509_extensions = ca
[dn]
CN = edsync throwaway test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_SERVER_REQUEST = """\
[req]
prompt = no
distinguished_name = dn
[dn]
CN = localhost
"""

_SERVER_EXTENSIONS = f"""\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {SERVER_NAMES}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: ``ca`` is what a client trusts; ``cert`` / ``key`` are the server's."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving ``cert`` (for ``Simulator(tls=...)``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def openssl_or_skip() -> str:
    """The ``openssl`` executable, or skip the calling test saying why."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command-line tool is needed to make test certificates")
    return openssl


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh CA and a server certificate it signed, for localhost / 127.0.0.1 / ::1."""
    openssl = openssl_or_skip()
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key"
    )
    ca_key, csr = directory / "ca.key", directory / "server.csr"
    ca_config, request_config = directory / "ca.cnf", directory / "server-req.cnf"
    extensions = directory / "server.ext"
    ca_config.write_text(_CA_CONFIG)
    request_config.write_text(_SERVER_REQUEST)
    extensions.write_text(_SERVER_EXTENSIONS)

    def run(*args: str | Path) -> None:
        done = subprocess.run(
            [openssl, *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "OPENSSL_CONF": str(ca_config)},  # not the system's openssl.cnf
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    run("req", "-x509", "-config", ca_config, *_EC_KEY, "-keyout", ca_key, "-out", files.ca,
        "-days", "2")  # fmt: skip
    run("req", "-new", "-config", request_config, *_EC_KEY, "-keyout", files.key, "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", ca_key, "-out", files.cert,
        "-days", "2", "-set_serial", str(secrets.randbits(63)), "-extfile", extensions)  # fmt: skip
    return files
