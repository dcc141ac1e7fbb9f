"""Connecting to a Ray cluster by the address a user gives (``--ray auto|local[:N]|HOST:PORT|ray://HOST:PORT``).

An address that does not answer fails fast with one error naming it and what was expected,
before anything is written anywhere (Ray's own connect loop retries for a minute and then
prints a stack of gRPC errors).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from prodsearch.errors import ClusterConnectionError, ConfigError, require

log = logging.getLogger(__name__)

#: How long a HOST:PORT address gets to accept a TCP connection before we give up.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RayAddress:
    """A parsed ``--ray`` value.

    ``mode``: ``"auto"`` (the cluster this machine belongs to: ``ray start`` or ``$RAY_ADDRESS``),
    ``"local"`` (start a private cluster in this process with ``num_cpus`` CPUs, all if ``None``),
    or ``"remote"`` (``host:port`` of a head node's GCS, or a ``ray://`` client address).
    """

    raw: str
    mode: str
    host: str | None = None
    port: int | None = None
    num_cpus: int | None = None

    @classmethod
    def parse(cls, value: str) -> RayAddress:
        raw = value.strip()
        if raw == "auto":
            return cls(raw, "auto")
        if raw == "local" or raw.startswith("local:"):
            n = raw.partition(":")[2]
            if n and (not n.isdigit() or int(n) < 1):
                raise ConfigError(f"--ray {value!r}: expected local or local:N with N >= 1 CPUs")
            return cls(raw, "local", num_cpus=int(n) if n else None)
        hostport = raw.removeprefix("ray://")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--ray {value!r}: expected auto, local[:N], HOST:PORT (a Ray head node) or ray://HOST:PORT"
            )
        return cls(raw, "remote", host=host, port=int(port))


def _probe(host: str, port: int, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise ClusterConnectionError(
            f"Ray cluster at {host}:{port} did not answer within {timeout:g}s ({err}); expected a Ray head "
            f"node there (started with `ray start --head --port {port}`)"
        ) from None


def connect_ray(address: str | RayAddress, *, timeout: float = CONNECT_TIMEOUT_S) -> RayAddress:
    """Connect this process to the Ray cluster at ``address`` (no-op if already connected).

    Raises :class:`ClusterConnectionError` naming the address when nothing answers there.
    """
    addr = address if isinstance(address, RayAddress) else RayAddress.parse(address)
    ray = require("ray", "distributed")
    if addr.mode == "remote":
        _probe(addr.host or "", addr.port or 0, timeout)
    if ray.is_initialized():  # e.g. a driver script or a test that called ray.init() itself
        return addr
    kwargs = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if addr.mode == "local":
        ray.init(num_cpus=addr.num_cpus, **kwargs)
        return addr
    try:
        ray.init(address=addr.raw, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        where = (
            "this machine's Ray cluster (`ray start --head`, or $RAY_ADDRESS)"
            if addr.mode == "auto"
            else addr.raw
        )
        raise ClusterConnectionError(
            f"--ray {addr.raw}: could not connect to {where}: {str(err).splitlines()[0] if str(err) else err!r}; "
            "use --ray local to start a Ray instance inside this process"
        ) from None
    log.info("connected to Ray cluster %s: %s", addr.raw, ray.cluster_resources())
    return addr
