"""Canonical protein target names and the targets kept out of all training.

Public affinity sets name one protein many ways (``"p38"``, ``"P38"``, ``"MAPK14"``,
``"frag_p38"``; ``"Thrombin"``, ``"F2"``, ``"throm_nozob_hip75"``). :func:`canonical_target`
maps a name to one key, so that a split by target holds out a whole protein and the
exclusion below catches every spelling.

**Excluded targets.** BACE1, CDK2, JNK1, MCL1, p38α, PTP1B, thrombin and TYK2 are
reserved for an independent evaluation: no record of them may enter training,
validation or model selection, in any source set. :func:`is_excluded` is the one
test; the dataset builders call it on every series name, file stem and target
column they read, and ``tests/test_affinity_data.py`` checks it.

Example:
    >>> canonical_target("MAPK14"), canonical_target("frag_p38")
    ('P38A', 'P38A')
    >>> is_excluded("cr_bace2"), is_excluded("cdk8_koehler"), is_excluded("Factor Xa")
    (True, False, False)
"""

from __future__ import annotations

import re
from typing import Iterable, List

#: Canonical keys of the targets held out of every training / validation / selection set.
EXCLUDED_TARGETS = frozenset({"BACE1", "CDK2", "JNK1", "MCL1", "P38A", "PTP1B", "THROMBIN", "TYK2"})

# Spellings seen in the public sets (names, gene symbols, file stems), lower-case and
# stripped of everything but letters and digits -> canonical key.
_ALIASES = {
    # excluded targets
    "bace": "BACE1", "bace1": "BACE1", "betasecretase": "BACE1", "betasecretase1": "BACE1",
    "cdk2": "CDK2",
    "jnk1": "JNK1", "mapk8": "JNK1",
    "mcl1": "MCL1",
    "p38": "P38A", "p38a": "P38A", "p38alpha": "P38A", "mapk14": "P38A",
    "ptp1b": "PTP1B", "ptpn1": "PTP1B",
    "thrombin": "THROMBIN", "f2": "THROMBIN", "throm": "THROMBIN",
    "tyk2": "TYK2",
    # others that recur across sets under different names
    "cmet": "MET", "met": "MET",
    "factorxa": "F10", "fxa": "F10", "f10": "F10",
    "hsp90": "HSP90AA1", "hsp90aa1": "HSP90AA1", "hsp90a": "HSP90AA1",
    "eg5": "KIF11", "kif11": "KIF11",
    "shp2": "PTPN11", "ptpn11": "PTPN11",
    "hif2alpha": "EPAS1", "hif2a": "EPAS1", "epas1": "EPAS1",
    "a2a": "ADORA2A", "adora2a": "ADORA2A",
    "dlk": "MAP3K12", "map3k12": "MAP3K12",
    "renin": "REN", "ren": "REN",
    "hne": "ELANE", "elane": "ELANE",
    "chk1": "CHEK1", "chek1": "CHEK1",
    "eralpha": "ESR1", "era": "ESR1", "esr1": "ESR1",
    "urokinase": "PLAU", "plau": "PLAU",
    "betatryptase": "TPSB2", "tpsb2": "TPSB2",
    "p2y1": "P2RY1", "p2ry1": "P2RY1",
    "ox2": "HCRTR2", "hcrtr2": "HCRTR2",
    "ck2": "CSNK2A1", "csnk2a1": "CSNK2A1",
    "galectin": "LGALS3", "galectin3": "LGALS3", "lgals3": "LGALS3",
    "hfaah": "FAAH", "faah": "FAAH",
    "taf12": "TAF1", "taf1": "TAF1",
    "brd4": "BRD4", "brd41": "BRD4",
    "hivprot": "HIV1PR", "hiv1protease": "HIV1PR", "hivprotease": "HIV1PR",
    "t4lysozyme": "T4L", "t4l": "T4L",
    "pim1": "PIM1", "syk": "SYK", "tnks2": "TNKS2", "cdk8": "CDK8", "pfkfb3": "PFKFB3",
    "jak1": "JAK1", "jak2": "JAK2", "egfr": "EGFR", "irak4": "IRAK4", "ephx2": "EPHX2",
    "itk": "ITK", "btk": "BTK", "ezh2": "EZH2",
}

# An excluded target found anywhere inside a name or file stem ("cr_bace2",
# "thrombin_whole_map", "frag_mcl1_noweak", "jnk1_manual_flips", "MAPK14").
# Word-ish boundaries keep CDK2 from matching CDK20 and F2 from matching F10/F2R.
_EXCLUDED_PATTERN = re.compile(
    r"(bace|cdk2(?!\d)|jnk1(?!\d)|mapk8(?!\d)|mcl1(?!\d)|p38|mapk14|ptp1b|ptpn1(?!\d)|thromb|throm"
    r"|tyk2(?!\d)|(?<![a-z0-9])f2(?![a-z0-9]))",
    re.IGNORECASE,
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def canonical_target(name: str) -> str:
    """One key per protein for a target name, gene symbol or series file stem.

    Unknown names map to their upper-case letters and digits (``"Scytalone
    dehydratase"`` -> ``"SCYTALONEDEHYDRATASE"``); a file stem is tried whole, then by
    its first ``_``-separated word (``"syk_4puz_fullmap"`` -> ``"SYK"``).

    Example:
        >>> canonical_target("Factor Xa"), canonical_target("tnks2_fullmap")
        ('F10', 'TNKS2')
    """
    key = _key(name)
    if key in _ALIASES:
        return _ALIASES[key]
    if is_excluded(name):
        for alias, target in _ALIASES.items():
            if target in EXCLUDED_TARGETS and alias in key and len(alias) > 2:
                return target
    first = _key(re.split(r"[_\s|/-]+", str(name).strip())[0]) if str(name).strip() else ""
    if first in _ALIASES:
        return _ALIASES[first]
    return key.upper()


def is_excluded(*names: str) -> bool:
    """Whether any of ``names`` (target names, gene symbols, series or file names)
    denotes a target reserved for independent evaluation (see module docstring).

    Example:
        >>> is_excluded("Factor Xa", "fxa_set3"), is_excluded("CDK8", "thrombin_core")
        (False, True)
    """
    for name in names:
        if name is None:
            continue
        text = str(name)
        if _key(text) in _ALIASES and _ALIASES[_key(text)] in EXCLUDED_TARGETS:
            return True
        if _EXCLUDED_PATTERN.search(text.replace("_", " ").replace("|", " ").replace("/", " ")):
            return True
    return False


def excluded_records(source_tags: Iterable[str]) -> List[bool]:
    """For each record of a labelled data set, whether it comes from a source named for an
    excluded target: :func:`is_excluded` on the source name before the first ``:`` of its
    tag (``"<source>:<id>:conf<c>:frame<k>"``).

    Example:
        >>> excluded_records(["qm9:1:conf0:frame0", "cdk2:4:conf0:frame1"])
        [False, True]
    """
    return [is_excluded(str(tag).split(":")[0]) for tag in source_tags]


__all__ = ["EXCLUDED_TARGETS", "canonical_target", "excluded_records", "is_excluded"]
