"""Checksummed downloads into a local cache, and a quick check that the internet is there.

The cache is ``~/.cache/mmcourse`` unless ``root`` is given or ``MMCOURSE_CACHE`` is set.
Before downloading, ``check_online`` opens one TCP connection with a short timeout, so that
an offline laptop gets a clear error within seconds instead of a hang.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from mmcourse.runtime import in_ci

CACHE_ENV = "MMCOURSE_CACHE"
EMBEDDED_HINT = (
    "The course's own data set is embedded in the package and needs no download: "
    "use mmcourse.data.load_split('train') (also 'val', 'test') instead."
)


class OfflineError(ConnectionError):
    """The internet (or the one server we need) cannot be reached."""


def cache_dir(root: str | Path | None = None) -> Path:
    """Where downloads go: ``root``, else ``$MMCOURSE_CACHE``, else ``~/.cache/mmcourse``."""
    if root is None:
        root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mmcourse"
    return Path(root).expanduser()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (``md5``, ``sha256``, ...), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _endpoint(url: str) -> tuple[str, int]:
    """The (host, port) a request for ``url`` connects to first: the proxy when one is set."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        raise ValueError(f"expected a URL with a host name, got {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def check_online(url: str, timeout: float = 3.0) -> None:
    """Raise ``OfflineError`` unless a TCP connection to ``url``'s server opens within ``timeout``.

    The probe runs in a daemon thread that we wait on for ``timeout`` seconds, so that a slow
    name lookup (which socket timeouts do not cover) cannot make the caller hang.
    """
    host, port = _endpoint(url)
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as err:
            outcome.append(err)

    thread = threading.Thread(target=probe, name="mmcourse-online-check", daemon=True)
    thread.start()
    thread.join(timeout)
    result = list(outcome)
    if result and result[0] is None:
        return
    reason = f"no answer within {timeout:g} s" if not result else str(result[0]) or "refused"
    raise OfflineError(
        f"Cannot reach {host}:{port} ({reason}): this machine seems to be offline, "
        f"so {url} cannot be downloaded. {EMBEDDED_HINT}"
    )


def fetch(url: str, dest: str | Path, *, algorithm: str = "sha256", digest: str | None,
          timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` and check its ``algorithm`` digest before keeping it.

    The bytes go to ``dest.part`` first and are renamed only when the digest matches, so an
    interrupted or corrupt download never looks like a good file. ``digest=None`` skips the
    check: only for archives whose members are verified one by one afterwards.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=in_ci())
            with bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if digest is not None and h.hexdigest() != digest.lower():
        part.unlink(missing_ok=True)
        raise ValueError(
            f"{algorithm} mismatch for {url}: expected {digest}, got {h.hexdigest()}; "
            "the download is corrupt or the file changed upstream, so it was not kept"
        )
    os.replace(part, dest)
    return dest


def fetch_first(urls: list[str], dest: str | Path, *, algorithm: str, digest: str,
                timeout: float = 3.0) -> Path:
    """Try each mirror in turn: ``check_online`` (``timeout`` s), then ``fetch``.

    Raises ``OfflineError`` when no mirror can be reached, and the last download error when
    mirrors answer but none delivers the file.
    """
    if not urls:
        raise ValueError("expected at least one URL to download from")
    errors: list[BaseException] = []
    for url in urls:
        try:
            check_online(url, timeout=timeout)
            return fetch(url, dest, algorithm=algorithm, digest=digest)
        except (OSError, urllib.error.URLError) as err:  # OfflineError is an OSError too
            errors.append(err)
    if all(isinstance(e, OfflineError) for e in errors):
        raise errors[0]
    name = Path(dest).name
    raise OSError(f"could not download {name} from any of {urls}: {errors[-1]}") from errors[-1]
