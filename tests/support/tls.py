"""A test CA, a server certificate for 127.0.0.1/localhost (and an expired one) and a client
certificate signed by it, a second CA and a client certificate it signed (the wrong-CA cases),
and a redis-server that speaks TLS only. A pytest plugin (``pytest_plugins`` in
tests/conftest.py): the ``tls_files`` and ``tls_redis`` fixtures, one of each per session."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worker.errors import ServiceUnavailable
from worker.ops.stack import Process, free_port, redis_binary, wait_for_port

__all__ = ["TlsFiles", "make_tls_files", "start_tls_redis", "tls_files", "tls_redis"]

_VALID = dt.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``ca`` signed ``server_cert`` (for 127.0.0.1 and localhost; key
    ``server_key``), ``expired_server_cert`` (the same names, valid until a minute ago; key
    ``expired_server_key``) and ``client_cert`` (key ``client_key``), for mutual TLS;
    ``other_ca``, a CA no server here trusts, signed ``other_client_cert`` (key
    ``other_client_key``)."""

    ca: Path
    server_cert: Path
    server_key: Path
    expired_server_cert: Path
    expired_server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca(common_name: str, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime, *,
          common_name: str, usage: x509.ObjectIdentifier,
          san: x509.SubjectAlternativeName | None = None, valid: dt.timedelta = _VALID,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate ``ca`` signed, valid from five minutes ago for ``valid`` from now."""
    key = _key()
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + valid)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate the CAs and the certificates (valid for a day but the expired one) as PEM files
    in ``directory``."""
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = _ca("intent-worker test CA", now)
    other, other_key = _ca("an unrelated CA", now)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.DNSName("localhost")])
    server, server_key = _leaf(ca, ca_key, now, common_name="localhost", san=san,
                               usage=ExtendedKeyUsageOID.SERVER_AUTH)
    expired, expired_key = _leaf(ca, ca_key, now, common_name="localhost", san=san,
                                 usage=ExtendedKeyUsageOID.SERVER_AUTH,
                                 valid=-dt.timedelta(minutes=1))
    client, client_key = _leaf(ca, ca_key, now, common_name="intent-worker",
                               usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger, stranger_key = _leaf(other, other_key, now, common_name="intent-worker",
                                   usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return TlsFiles(ca=_write_cert(directory / "ca.pem", ca),
                    server_cert=_write_cert(directory / "server.pem", server),
                    server_key=_write_key(directory / "server.key", server_key),
                    expired_server_cert=_write_cert(directory / "expired.pem", expired),
                    expired_server_key=_write_key(directory / "expired.key", expired_key),
                    client_cert=_write_cert(directory / "client.pem", client),
                    client_key=_write_key(directory / "client.key", client_key),
                    other_ca=_write_cert(directory / "other-ca.pem", other),
                    other_client_cert=_write_cert(directory / "other-client.pem", stranger),
                    other_client_key=_write_key(directory / "other-client.key", stranger_key))


def start_tls_redis(files: TlsFiles, *, workdir: Path | None = None, client_certs: bool = False,
                    expired: bool = False) -> Process:
    """A redis-server listening for TLS only (``--port 0``) on a free loopback port, with the
    test CA's server certificate (``expired``: the expired one); with ``client_certs``, clients
    must show a certificate the test CA signed (mutual TLS), else none. ``Process.port`` is the
    TLS port, on 127.0.0.1 and on 127.0.0.2, which the certificate does not name. Its own
    process rather than ``start_redis``, whose ``--port`` is the plaintext one.
    The server's output goes to ``redis.log`` in ``workdir``, quoted if it fails to start (a
    redis-server built without TLS says so there)."""
    port = free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="intent-redis-tls-"))
    cert, key = ((files.expired_server_cert, files.expired_server_key) if expired
                 else (files.server_cert, files.server_key))
    # 127.0.0.2 too: an address on this host that the server certificate does not name
    args = [redis_binary(), "--port", "0", "--tls-port", str(port),
            "--bind", "127.0.0.1", "127.0.0.2",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(files.ca),
            "--tls-auth-clients", "yes" if client_certs else "no",
            "--save", "", "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]
    log_path = workdir / "redis.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - redis-server from PATH, arguments built here
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    redis = Process("redis-tls", proc, port)
    try:
        wait_for_port(port, timeout_s=10, proc=proc)
    except ServiceUnavailable as exc:
        redis.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ServiceUnavailable(f"redis-server with TLS did not start ({exc}); its log:\n"
                                 f"{tail}\n(run ./bootstrap for a redis-server built with "
                                 "TLS)") from None
    except BaseException:
        redis.stop()
        raise
    return redis


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def running_tls_redis(files: TlsFiles, tmp_path_factory: pytest.TempPathFactory, name: str,
                      **options: bool) -> Iterator[Process]:
    """The body of a fixture: :func:`start_tls_redis` (``options``: ``client_certs``,
    ``expired``) in a fresh directory named ``name``, stopped when the fixture ends."""
    proc = start_tls_redis(files, workdir=tmp_path_factory.mktemp(name), **options)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def tls_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A redis-server speaking TLS only, the test CA's certificate, no client certificates."""
    yield from running_tls_redis(tls_files, tmp_path_factory, "redis-tls")
