"""Proof that data files are intact: checksum lists in ``sha256sum`` format, and the check.

One format and one check for every data set: the embedded course data (its list ships next to
the files) and the FSDD recordings of AV-MNIST (a list shipped in the package).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from mmcourse.data.download import file_digest

FILES = Path(__file__).resolve().parent / "files"  # inside the package, so a wheel has it too
CHECKSUMS = "spoken_digits.sha256"
REINSTALL = "pip install --force-reinstall --no-deps mmcourse"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class DataFileError(RuntimeError):
    """A shipped data file is missing or its contents are not what was shipped."""


def files_dir(files: str | Path | None = None) -> Path:
    """The folder of the data files: ``files`` when given, else the package's own."""
    return FILES if files is None else Path(files)


def sha256(path: Path) -> str:
    """SHA-256 hex digest of the file at ``path``."""
    return file_digest(path, "sha256")


def read_manifest(path: str | Path, names: re.Pattern[str] | None = None) -> dict[str, str]:
    """File name -> SHA-256, from a checksum list in ``sha256sum`` format (one line
    ``<sha256>  <name>`` per file), gzip-compressed or not; ``names``: a pattern every name
    must match. FileNotFoundError when the list is missing, ValueError naming a bad line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing checksum list {path}")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # the gzip magic number
        data = gzip.decompress(data)
    sums = {}
    for n, line in enumerate(data.decode().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not SHA256_HEX.match(parts[0]) or (
                names is not None and not names.match(parts[1])):
            pattern = "<name>" if names is None else names.pattern
            raise ValueError(f"{path}, line {n}: expected '<sha256>  {pattern}', got {line!r}")
        sums[parts[1]] = parts[0]
    return sums


def file_problem(path: Path, digest: str) -> str | None:
    """Why the file at ``path`` is not the one listed with SHA-256 ``digest``; None if it is."""
    if not path.is_file():
        return f"missing data file {path}"
    if sha256(path) != digest:
        return f"corrupted data file {path} (its SHA-256 differs from the checksum list)"
    return None


def manifest_problems(folder: str | Path, sums: dict[str, str]) -> list[str]:
    """Every file of ``sums`` (name -> SHA-256) missing from ``folder`` or corrupted there."""
    found = (file_problem(Path(folder) / name, digest) for name, digest in sums.items())
    return [p for p in found if p is not None]


def expected(files: str | Path | None = None) -> dict[str, str]:
    """File name -> SHA-256 of the embedded data, from the list shipped next to the files."""
    try:
        return read_manifest(files_dir(files) / CHECKSUMS)
    except (FileNotFoundError, ValueError) as err:
        raise DataFileError(f"{err}; reinstall: {REINSTALL}") from None


def problems(files: str | Path | None = None) -> list[str]:
    """Every missing or corrupted file of the embedded data, one message each; empty when
    all is well."""
    try:
        sums = expected(files)
    except DataFileError as e:
        return [str(e)]
    return manifest_problems(files_dir(files), sums)


def checked(name: str, files: str | Path | None = None) -> Path:
    """The path of data file ``name``, after checking its SHA-256; DataFileError otherwise."""
    sums = expected(files)
    path = files_dir(files) / name
    if name not in sums:
        raise DataFileError(f"{path} is not in the checksum list {CHECKSUMS}")
    problem = file_problem(path, sums[name])
    if problem is not None:
        raise DataFileError(f"{problem}; reinstall: {REINSTALL}")
    return path
