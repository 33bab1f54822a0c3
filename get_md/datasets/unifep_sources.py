"""The Uni-FEP benchmark repository: reading its files (bare git repository or checkout),
listing its series, naming them and deciding which to skip.

Part of :mod:`get_md.datasets.reference_poses`, which re-exports its public names.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Optional, Union

from get_md.datasets.targets import canonical_target, is_excluded
from get_md.errors import DatasetError

PathLike = Union[str, "os.PathLike[str]"]

#: Value of the ``source`` tag of every record written here.
SOURCE = "Uni-FEP-Benchmarks ac521c2"
#: Folder of the series inside the benchmark repository.
SERIES_DIR = "uni_fep_benchmarks"

_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "μ": "mu"}


def _is_git_repo(repo: PathLike) -> bool:
    p = Path(repo)
    return not (p / SERIES_DIR).is_dir() and ((p / "HEAD").is_file() or (p / ".git").exists())


def read_source(repo: PathLike, relpath: str) -> bytes:
    """Bytes of ``relpath`` in ``repo`` (a bare git repository, read at ``HEAD``, or a
    checked-out folder).

    Example:
        >>> path = "uni_fep_benchmarks/ChEMBL|ADK|CHEMBL642224/result_dG.csv"
        >>> read_source(repo, path)[:12]  # doctest: +SKIP
        b'ligand_smile'
    """
    if not _is_git_repo(repo):
        return (Path(repo) / relpath).read_bytes()
    res = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{relpath}"],
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise FileNotFoundError(f"{relpath}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def list_series(repo: PathLike) -> list[str]:
    """Folder names of the benchmark's series, sorted (names only: nothing is read).

    Example:
        >>> list_series(repo)[:2]  # doctest: +SKIP
        ['ChEMBL|ADK|CHEMBL642224', 'ChEMBL|ADK|CHEMBL642225']
    """
    if not _is_git_repo(repo):
        folder = Path(repo) / SERIES_DIR
        if not folder.is_dir():  # had been a bare FileNotFoundError / NotADirectoryError
            raise DatasetError(f"{repo}: not the Uni-FEP-Benchmarks repository (no {SERIES_DIR}/ folder, "
                               "not a git repository)")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    res = subprocess.run(["git", "-C", str(repo), "ls-tree", "-d", "-z", "--name-only",
                          f"HEAD:{SERIES_DIR}"], capture_output=True, check=False)
    if res.returncode != 0:
        raise DatasetError(f"{repo}: cannot list {SERIES_DIR}/ at HEAD "
                           f"({res.stderr.decode(errors='replace').strip() or 'git failed'})")
    return sorted(n for n in res.stdout.decode("utf-8").split("\0") if n)


def target_field(folder: str) -> str:
    """The target part of a series folder name (second ``|`` field, else the name).

    Example:
        >>> target_field("ChEMBL|MAPK14|CHEMBL123"), target_field("Merck8|SYK")
        ('MAPK14', 'SYK')
    """
    parts = folder.split("|")
    return parts[1] if len(parts) > 1 else folder


def _transliterate(text: str) -> str:
    for k, v in _GREEK.items():
        text = text.replace(k, v).replace(k.upper(), v)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def series_target(folder: str) -> str:
    """Canonical target key of a series (Greek letters spelt out first).

    Example:
        >>> series_target("Merck8|HIF-2α"), series_target("Hermite|Eg5")
        ('EPAS1', 'KIF11')
    """
    return canonical_target(_transliterate(target_field(folder)))


def skip_reason(folder: str) -> Optional[str]:
    """Why a series is not built from its name alone, or ``None`` to build it.

    Example:
        >>> skip_reason("ChEMBL|F2|CHEMBL1"), skip_reason("CyclicPeptide|PCSK9")
        ('excluded target', 'cyclic peptide')
    """
    tf = target_field(folder)
    if is_excluded(folder, tf) or is_excluded(_transliterate(folder), _transliterate(tf)):
        return "excluded target"
    if folder.lstrip('"').startswith("CyclicPeptide"):
        return "cyclic peptide"
    if is_excluded(safe_series_name(folder)):
        return "excluded target"
    return None


def safe_series_name(folder: str) -> str:
    """File-system name of a series folder (ASCII letters, digits, ``.+-_``).

    Example:
        >>> safe_series_name("ChEMBL|ADK|CHEMBL642224"), safe_series_name('"Merck8|HIF-2α"')
        ('ChEMBL_ADK_CHEMBL642224', 'Merck8_HIF-2alpha')
    """
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", _transliterate(folder)).strip("_.")
    return name or "series"


__all__ = [
    "SERIES_DIR", "SOURCE", "list_series", "read_source", "safe_series_name", "series_target",
    "skip_reason", "target_field",
]
