"""TLS for joining a scheduler: certificate checks and the refusals' one-line reasons.

A Dask scheduler runs whatever a client sends it, so a shared cluster should
listen on ``tls://`` with mutual authentication: every party presents a
certificate signed by the cluster's own CA (``deploy/make_certs.py`` makes
them). ``execution.py`` builds the ``distributed.security.Security``; this
module holds what needs no Dask: checking the certificate files before
anything is started, and turning a failed connection into a line that says
what is wrong (no Dask import here, only ``ssl`` and ``socket``).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ClusterUnavailable, InputError

TLS_SCHEME = "tls://"
PROBE_SECONDS = 2.0

# Where each file of a client can come from: our option, then Dask's configuration.
SOURCES = {
    "ca_file": "--tls_ca_file / distributed.comm.tls.ca-file",
    "cert": "--tls_cert / distributed.comm.tls.client.cert",
    "key": "--tls_key / distributed.comm.tls.client.key",
}


@dataclass(frozen=True)
class ClientFiles:
    """The CA, certificate and key a client presents (paths or PEM text, or None)."""

    ca_file: str | None
    cert: str | None
    key: str | None

    def check(self, address: str) -> None:
        """Refuse, before connecting, a TLS address without files or with unreadable ones.

        Raises
        ------
        ClusterUnavailable
            ``address`` is ``tls://`` but the CA or the client certificate is
            not set (a Dask TLS scheduler always asks for the client's).
        InputError
            A file that is set cannot be read.
        """
        if address.startswith(TLS_SCHEME):
            missing = [SOURCES[name] for name in ("ca_file", "cert") if not getattr(self, name)]
            if missing:
                raise ClusterUnavailable(
                    f"the Dask scheduler at {address} needs TLS certificates: set "
                    + " and ".join(missing)
                    + " (deploy/make_certs.py makes them)"
                )
        for name in ("ca_file", "cert", "key"):
            value = getattr(self, name)
            if value and "\n" not in value:  # PEM text in memory needs no file
                check_readable(value, SOURCES[name])


def check_readable(path: str, source: str) -> None:
    """Raise ``InputError`` naming ``path`` and where it came from if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"TLS file {path} ({source}): cannot read it ({reason})") from None


def unusable_files(files: ClientFiles, error: BaseException) -> InputError:
    """The error for certificate files ``ssl`` cannot load (not PEM, key not the cert's)."""
    values = (files.ca_file, files.cert, files.key)
    shown = ", ".join("(in memory)" if "\n" in v else v for v in values if v)
    return InputError(f"TLS files {shown}: cannot be used ({_one_line(error)})")


def refusal(
    address: str, timeout: float, files: ClientFiles, error: BaseException, budget: float
) -> str:
    """One line saying why joining ``address`` failed, naming the TLS cause when there is one.

    Dask's own error does not always say it (a refused certificate may show
    as a closed connection), so the cause is asked of the scheduler again with
    a bare TLS handshake (``_probe``) that takes at most ``budget`` seconds
    (what is left of the connect timeout) and 2 s.
    """
    text = _one_line(error)
    upper = text.upper()
    if address.startswith(TLS_SCHEME):
        if any(alert in upper for alert in ("UNKNOWN_CA", "CERTIFICATE_REQUIRED", "BAD_CERT")):
            answer = _REFUSED
        elif "CERTIFICATE DOES NOT MATCH" in upper or "CERTIFICATE_VERIFY_FAILED" in upper:
            answer = _UNTRUSTED
        else:
            answer = _probe(address, _client_context(files), budget)
        if answer == _REFUSED:
            return (
                f"the Dask scheduler at {address} refused this client's certificate "
                f"{files.cert} (not signed by the cluster's CA?)"
            )
        if answer == _UNTRUSTED:
            return (
                f"the Dask scheduler at {address} presented a certificate that the CA "
                f"{files.ca_file} did not sign (another cluster's CA?)"
            )
        if answer == _NOT_TLS:
            return f"the Dask scheduler at {address} does not speak TLS (a plain tcp:// scheduler?)"
    elif _probe(address, _bare_context(), budget) in (_ACCEPTED, _REFUSED):
        tls_address = TLS_SCHEME + address.split("://", 1)[-1]
        return (
            f"the Dask scheduler at {address} requires TLS: use --scheduler_address "
            f"{tls_address} with --tls_ca_file, --tls_cert and --tls_key"
        )
    return (
        f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
        f"({type(error).__name__}: {text})"
    )


# What a scheduler answers to a TLS handshake.
_ACCEPTED = "accepted"  # handshake done, the scheduler spoke first (as Dask does)
_REFUSED = "refused"  # a TLS alert or a hang-up: our certificate was not accepted
_UNTRUSTED = "untrusted"  # its certificate is not signed by our CA
_NOT_TLS = "not TLS"  # an answer that is not TLS at all


def _bare_context() -> ssl.SSLContext:
    """A context that verifies nothing and presents nothing: only asks "is this TLS?"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _client_context(files: ClientFiles) -> ssl.SSLContext | None:
    """The client's own credentials, as Dask uses them (None if they are not all files)."""
    if not (files.ca_file and files.cert) or any(
        "\n" in value for value in (files.ca_file, files.cert, files.key) if value
    ):
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=files.ca_file)
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ValueError):
        return None
    context.check_hostname = False  # as Dask: the cluster's CA is the only check
    return context


def _probe(address: str, context: ssl.SSLContext | None, budget: float) -> str | None:
    """Handshake with ``address`` and wait for its first bytes; None when it tells nothing."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if context is None or host is None or port is None or budget < 0.1:
        return None
    wait = min(budget, PROBE_SECONDS) / 3  # connect, handshake, first bytes
    try:
        with socket.create_connection((host, port), timeout=wait) as raw:
            with context.wrap_socket(raw, server_hostname=host) as stream:
                try:
                    return _ACCEPTED if stream.recv(1) else _REFUSED
                except TimeoutError:
                    return None
                except (ssl.SSLError, ConnectionError):
                    return _REFUSED
    except ssl.SSLCertVerificationError:
        return _UNTRUSTED
    except ssl.SSLError as error:
        # An alert is a TLS server refusing us; a garbled reply is not TLS at all.
        return _REFUSED if "ALERT" in str(error).upper() else _NOT_TLS
    except OSError:
        return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
