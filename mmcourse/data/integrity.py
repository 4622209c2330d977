"""Where the embedded data lives, and proof that it is intact (SHA-256 of every file)."""

from __future__ import annotations

from pathlib import Path

from mmcourse.data.download import file_digest

FILES = Path(__file__).resolve().parent / "files"  # inside the package, so a wheel has it too
CHECKSUMS = "spoken_digits.sha256"
REINSTALL = "pip install --force-reinstall --no-deps mmcourse"


class DataFileError(RuntimeError):
    """A shipped data file is missing or its contents are not what was shipped."""


def files_dir(files: str | Path | None = None) -> Path:
    """The folder of the data files: ``files`` when given, else the package's own."""
    return FILES if files is None else Path(files)


def sha256(path: Path) -> str:
    """SHA-256 hex digest of the file at ``path``."""
    return file_digest(path, "sha256")


def expected(files: str | Path | None = None) -> dict[str, str]:
    """File name -> SHA-256, read from the checksum list shipped next to the files."""
    path = files_dir(files) / CHECKSUMS
    if not path.is_file():
        raise DataFileError(f"missing checksum list {path}; reinstall: {REINSTALL}")
    sums = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataFileError(f"{path}, line {n}: expected '<sha256>  <name>', got {line!r}")
        sums[parts[1]] = parts[0]
    return sums


def problems(files: str | Path | None = None) -> list[str]:
    """Every missing or corrupted file, one message each; empty when all is well."""
    try:
        sums = expected(files)
    except DataFileError as e:
        return [str(e)]
    found = []
    for name, digest in sums.items():
        path = files_dir(files) / name
        if not path.is_file():
            found.append(f"missing data file {path}")
        elif sha256(path) != digest:
            found.append(f"corrupted data file {path} (SHA-256 differs from the shipped one)")
    return found


def checked(name: str, files: str | Path | None = None) -> Path:
    """The path of data file ``name``, after checking its SHA-256; DataFileError otherwise."""
    sums = expected(files)
    path = files_dir(files) / name
    if name not in sums:
        raise DataFileError(f"{path} is not in the checksum list {CHECKSUMS}")
    if not path.is_file():
        raise DataFileError(f"missing data file {path}; reinstall: {REINSTALL}")
    if sha256(path) != sums[name]:
        raise DataFileError(
            f"corrupted data file {path}: its SHA-256 differs from the shipped one; "
            f"reinstall: {REINSTALL}"
        )
    return path
