"""ssl under patch_all(): patched clients talk to a local TLS server with a certificate made by
this test (with the cryptography package when installed, else the openssl command)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from monkey_scripts.runner import run_script

pytestmark = pytest.mark.timeout(120)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM files)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        assert openssl is not None, "neither cryptography nor the openssl command is available"
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    import ipaddress

    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(private_key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def test_tls_clients_and_server(backend: str, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    report = run_script("tls.py", backend, str(cert), str(key))
    assert report["wrong"] == []
    # 20 exchanges each delayed 0.3 s by the server: serially 6 s.
    assert 0.3 <= report["elapsed"] < 2.5
    assert report["legacy"] in ("LEGACY\n", "absent")
    assert report["kind"] == "GreenSSLSocket"
    outcome, elapsed, message = report["timeout"]
    assert outcome == "TimeoutError"
    assert 0.19 <= elapsed < 0.6
    assert "timed out" in message
    assert report["thread"] == ["THREAD\n"]
