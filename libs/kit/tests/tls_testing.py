"""Throwaway certificates for TLS tests, made with the ``openssl`` binary: a CA, a server
certificate for 127.0.0.1 / localhost signed by it, a client certificate signed by it (mutual TLS),
and a second CA that signed nothing of these."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", *_KEY, "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}")
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
    _openssl("req", *_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return cert, key


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    server = _signed(
        folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    client = _signed(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    other_ca, _ = _ca(folder, "other-ca")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other_ca)
