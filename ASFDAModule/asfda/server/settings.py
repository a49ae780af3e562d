"""What a backend is allowed and how long it waits: the limits the ``asfda serve`` options set."""

from __future__ import annotations

from dataclasses import dataclass

from ..io.headers import DEFAULT_MAX_VOXELS


@dataclass
class ServerSettings:
    max_upload_bytes: int = 2 * 2**30
    trust_bundle_code: bool = False  # a session created here may run its bundle's code (--trust-bundle-code)
    cancel_grace_seconds: float = 3.0
    ranking_wait_seconds: float = 3600.0
    # During a pool's first scoring, ``next`` serves from the cases scored so far once this many are (see
    # ``ranking.provisional_ready``). On 2 CPU cores 8 of 20 came after 55 % of the first scoring (a loaded
    # run), about 9.7 s of the 17.7 s measured idle: too close to the 10 s first-case target. 6 leave a
    # margin, and the best of 6 cases spread over the pool is still expected in its top seventh.
    provisional_min_scored: int = 6
    poll_seconds: float = 0.2
    worker_idle_seconds: float = 300.0  # a warm worker without work for this long is retired
    max_voxels: int = DEFAULT_MAX_VOXELS  # decoded size bound, checked from the header before reading
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the loopback ones (a reverse proxy's)
