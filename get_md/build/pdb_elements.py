"""Elements of PDB atom records whose element column (77-78) is blank.

biotite guesses such elements from the atom name's first letter (``CA`` of a calcium ion
-> C, ``CL1`` -> C, ``NA`` -> N, ``HG`` -> H, ``SE`` of MSE -> S). Here the PDB format's
own rules decide: the residue's wwPDB template where it names the atom, else the name's
column alignment (a one-letter element starts in column 14, a two-letter one in 13).

Example:
    >>> guess_element("CL1 ", "UNL"), guess_element(" CA ", "ALA"), guess_element("CA  ", "CA")
    ('Cl', 'C', 'Ca')
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Optional

from get_md.build._common import element_to_z

#: Residue names of no particular molecule (generic ligand names), whose wwPDB
#: templates (the CCD entry ``LIG`` is one molecule) say nothing of the file's atoms.
GENERIC_RESIDUES = frozenset({"LIG", "UNL", "UNK", "MOL", "DRG", "INH", "LGD", "UNX", ""})


def _is_element(symbol: str) -> bool:
    try:
        element_to_z(symbol)
    except (KeyError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def _template(res_name: str) -> dict[str, str]:
    """Atom name -> element of a residue's wwPDB (CCD) template; empty if unknown."""
    if res_name in GENERIC_RESIDUES:
        return {}
    try:
        import biotite.structure.info as info

        res = info.residue(res_name)
    except Exception:  # noqa: BLE001 - a residue the dictionary lacks has no template
        return {}
    return {str(n): str(e) for n, e in zip(res.atom_name, res.element, strict=True)}


def _title(symbol: str) -> str:
    return symbol[:1].upper() + symbol[1:].lower()


#: Two-letter readings that a left-aligned name of a carbon, nitrogen or oxygen of an
#: organic molecule spells (``CA12``, ``CD1``, ``NA3``, ``OS2``): taken as C / N / O inside a
#: residue of several atoms, where a lone metal or noble-gas atom is not what the name means.
_ORGANIC_LOOKALIKES = frozenset({"CA", "CD", "CE", "CF", "CO", "CR", "CS", "CU", "NA", "NB", "ND", "NE",
                                 "NI", "NO", "OS"})


def guess_element(name_field: str, res_name: str, alone: bool = True) -> str:
    """Element of an atom from its 4-column name field (columns 13-16) and residue name;
    "" when the name tells none.

    The residue's wwPDB template decides where it names the atom (``SE`` of MSE -> Se,
    ``CA`` of residue CA -> Ca). Otherwise the name's alignment: a blank or a digit in
    column 13 (``" CA "``, ``"1HB "``) puts a one-letter element in column 14; a name
    starting in column 13 is a two-letter element when its first two letters are one and
    digits or nothing follow (``CL1`` -> Cl, ``BR`` -> Br); a hydrogen name (``HG11``,
    ``HO2``) and any other name stay one-letter. In a residue of several atoms
    (``alone=False``) a left-aligned ``CA12`` / ``CD1`` / ``NA3`` is carbon / nitrogen, not
    calcium / cadmium / sodium (:data:`_ORGANIC_LOOKALIKES`); halogens (``CL1``) stay two-letter.

    Example:
        >>> guess_element("CA12", "LIG"), guess_element("CA12", "LIG", alone=False), guess_element("CA  ", "CA")
        ('Ca', 'C', 'Ca')
    """
    name = name_field.strip().upper()
    if not name:
        return ""
    known = _template(res_name.strip().upper()).get(name)
    if known:
        return _title(known)
    field = name_field.ljust(4)[:4].upper()
    if field[0] == " " or field[0].isdigit():
        letters = field.lstrip(" 0123456789")
        return letters[0] if letters and _is_element(letters[0]) else ""
    two, rest = name[:2], name[2:]
    if len(two) == 2 and two[0] != "H" and _is_element(two) and (not rest or rest.isdigit()):
        if not alone and two in _ORGANIC_LOOKALIKES:
            return two[0]
        return _title(two)
    return name[0] if _is_element(name[0]) else ""


def _record(line: str) -> bool:
    return line.startswith(("ATOM  ", "HETATM"))


def fill_elements(text: str) -> tuple[str, Optional[str]]:
    """PDB text with blank element columns filled by :func:`guess_element`, and a note
    of what was filled (``"12 atom records ... C 8, Cl 1 (CL1 of UNL A:1), ..."``; None when
    every record has its element). A name that tells no element is left blank."""
    lines = text.splitlines()
    filled: Counter = Counter()
    rare: dict[str, str] = {}
    # atoms per residue (name, chain, number, insertion code; per MODEL alike): a name that
    # reads as a metal in a residue of several atoms is the organic atom it also spells
    model, residue_of = 0, {}
    for k, line in enumerate(lines):
        if line.startswith("MODEL"):
            model += 1
        elif _record(line):
            residue_of[k] = (model, line[17:27])
    residue_size = Counter(residue_of.values())
    for k, line in enumerate(lines):
        if not _record(line) or line[76:78].strip():
            continue
        element = guess_element(line[12:16], line[17:20], alone=residue_size[residue_of[k]] <= 1)
        if not element:
            continue
        lines[k] = line[:76].ljust(76) + element.upper().rjust(2) + line[78:]
        filled[element] += 1
        if element not in ("C", "N", "O", "H", "S", "P") and element not in rare:
            chain = f"{line[21]}:" if line[21].strip() else ""
            rare[element] = f"{line[12:16].strip()} of {line[17:20].strip()} {chain}{line[22:27].strip()}"
    if not filled:
        return text, None
    parts = ", ".join(f"{el} {n}" + (f" ({rare[el]})" if el in rare else "")
                      for el, n in filled.most_common())
    note = (f"{sum(filled.values())} atom records have no element (columns 77-78); taken from "
            f"the atom names by PDB column alignment and the wwPDB residue templates: {parts}")
    return "\n".join(lines) + "\n", note
