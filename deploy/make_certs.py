#!/usr/bin/env python
"""Make a private certificate authority and the TLS certificates of a Dask cluster.

A Dask scheduler runs whatever code a client sends it. With mutual TLS, only
holders of a certificate signed by this cluster's own CA can talk to it:
every party (scheduler, workers, clients) proves who it is with its
certificate, and checks the others' against ``ca.pem``.

Usage (needs the ``cryptography`` package: ``python -m pip install cryptography``)::

    python deploy/make_certs.py tls/                      # ./tls/ca.pem, scheduler.pem, ...
    python deploy/make_certs.py tls/ --days 90 --host scheduler.example.org

Files written to the directory (keys readable by their owner only):

- ``ca.pem`` — the CA certificate: every party needs it (``--tls-ca-file``).
- ``ca-key.pem`` — the CA's private key: only needed to issue more
  certificates; keep it off the cluster.
- ``scheduler.pem`` / ``scheduler-key.pem``, ``worker.pem`` / ``worker-key.pem``,
  ``client.pem`` / ``client-key.pem`` — a certificate and key per role
  (``--tls-cert`` / ``--tls-key`` of ``dask scheduler``, ``dask worker``, and
  ``--tls_cert`` / ``--tls_key`` of ``python -m tfbp_dask``).

Dask does not compare certificates with host names (it trusts the CA alone),
so ``--host`` only adds names to the certificates for other tools' benefit.
Existing files are never overwritten (``--force`` replaces them).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROLES = ("scheduler", "worker", "client")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "scheduler")


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tfbp_dask cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alternative_names(hosts: Sequence[str]):
    from cryptography import x509

    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, private: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    if private:  # also when the file existed with looser permissions
        os.chmod(path, 0o600)


def make_certificates(
    directory: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = 365,
    force: bool = False,
) -> dict[str, Path]:
    """Write a CA and a certificate + key per role to ``directory``.

    Returns
    -------
    dict
        ``ca``, ``ca_key`` and ``{role}_cert`` / ``{role}_key`` for each of
        ``scheduler``, ``worker`` and ``client``, mapped to their paths.

    Raises
    ------
    FileExistsError
        A file would be overwritten and ``force`` is false.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    directory = Path(directory)
    paths = {"ca": directory / "ca.pem", "ca_key": directory / "ca-key.pem"}
    for role in ROLES:
        paths[f"{role}_cert"] = directory / f"{role}.pem"
        paths[f"{role}_key"] = directory / f"{role}-key.pem"
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not force:
        raise FileExistsError(f"would overwrite {', '.join(existing)} (use --force)")
    directory.mkdir(parents=True, exist_ok=True)

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = _key()
    ca_name = _name("tfbp_dask cluster CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    private_format = serialization.PrivateFormat.PKCS8
    no_password = serialization.NoEncryption()
    _write(paths["ca"], ca_cert.public_bytes(pem), private=False)
    _write(paths["ca_key"], ca_key.private_bytes(pem, private_format, no_password), private=True)

    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    for role in ROLES:
        key = _key()
        # Workers and the scheduler both accept and open connections: every
        # role may act as TLS server and client.
        usage = x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"tfbp_dask {role}"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=False)
            .add_extension(_alternative_names(hosts), critical=False)
            .add_extension(authority, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(paths[f"{role}_cert"], cert.public_bytes(pem), private=False)
        key_bytes = key.private_bytes(pem, private_format, no_password)
        _write(paths[f"{role}_key"], key_bytes, private=True)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a private CA and scheduler/worker/client TLS certificates for Dask."
    )
    parser.add_argument("directory", type=Path, help="Where to write the files (created).")
    parser.add_argument("--days", type=int, default=365, help="Validity (default 365).")
    parser.add_argument(
        "--host",
        action="append",
        default=None,
        help="Host name or IP address put in the certificates (repeatable; "
        f"default: {', '.join(DEFAULT_HOSTS)}).",
    )
    parser.add_argument("--force", action="store_true", help="Replace existing files.")
    args = parser.parse_args(argv)
    if args.days <= 0:
        parser.error("--days must be positive")
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print(
            "error: needs the cryptography package (python -m pip install cryptography)",
            file=sys.stderr,
        )
        return 2
    try:
        paths = make_certificates(args.directory, args.host or DEFAULT_HOSTS, args.days, args.force)
    except (FileExistsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} files to {args.directory} (keep ca-key.pem off the cluster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
