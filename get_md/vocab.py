"""Vocabularies shared by builders and models: elements, block types, atom positions.

Indices here are part of the model-file contract (a model's metadata stores the
vocabulary it was trained with), so only ever append to these lists.

Example:
    >>> from get_md import vocab
    >>> vocab.block_type_index("ALA"), vocab.ligand_block_type(6) > 0
    (3, True)
"""

from __future__ import annotations

from ase.data import atomic_numbers as _ASE_ATOMIC_NUMBERS
from ase.data import chemical_symbols as _ASE_SYMBOLS

#: Element symbols indexed by atomic number (index 0 is a placeholder "X").
ELEMENTS: list[str] = list(_ASE_SYMBOLS)
MAX_ATOMIC_NUMBER = len(ELEMENTS) - 1

AMINO_ACIDS = [
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
]
#: Common alternative residue names mapped to the standard 20.
RESIDUE_ALIASES = {
    "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "MSE": "MET",
    "SEC": "CYS", "NLE": "LEU",
}
NUCLEOTIDES = ["DA", "DC", "DG", "DT", "DU", "A", "C", "G", "U", "DN", "N"]
WATER_NAMES = {"HOH", "WAT", "H2O", "TIP", "TIP3", "TIP4", "TIP5", "SOL", "SPC", "T3P", "T4P"}

SPECIAL_BLOCKS = ["<pad>", "<unk>", "<global>"]
#: Fixed part of the block vocabulary; ligand atoms follow at LIGAND_OFFSET + Z.
BLOCK_TYPES: list[str] = (
    SPECIAL_BLOCKS + AMINO_ACIDS + ["UNK_AA"] + NUCLEOTIDES + ["HOH", "ION", "UNK_HET"]
)
LIGAND_OFFSET = len(BLOCK_TYPES)
NUM_BLOCK_TYPES = LIGAND_OFFSET + MAX_ATOMIC_NUMBER + 1

#: Atom position codes inside a block (the GET paper's atom position embedding):
#: '' backbone, Greek-letter side-chain depth, P phosphate, ' sugar, sm small molecule.
ATOM_POSITIONS = ["<pad>", "<unk>", "", "A", "B", "G", "D", "E", "Z", "H", "P", "'", "sm"]
NUM_ATOM_POSITIONS = len(ATOM_POSITIONS)
_POS_INDEX = {p: i for i, p in enumerate(ATOM_POSITIONS)}
SMALL_MOLECULE_POSITION = _POS_INDEX["sm"]

#: Ligand heavy-atom chemistry (atom position codes after ``ATOM_POSITIONS``), read only by
#: models built with ``ligand_chemistry``: aromatic ("ar") or not ("al"), attached
#: hydrogens H0..H3 (3 or more), formal charge sign. What a heavy-atom model cannot see
#: in the coordinates alone: an NH donor from an N acceptor, a charged amine.
LIGAND_CHEMISTRY_POSITIONS = [
    f"sm:{ring}:H{h}:{q}" for ring in ("al", "ar") for h in range(4) for q in ("-", "0", "+")
]
NUM_ATOM_POSITIONS_WITH_CHEMISTRY = NUM_ATOM_POSITIONS + len(LIGAND_CHEMISTRY_POSITIONS)


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol, case-insensitive ("CL", "Cl" -> 17).

    Raises:
        KeyError: if the symbol is not an element.
    """
    s = symbol.strip()
    if not s:
        raise KeyError("empty element symbol")
    s = s[0].upper() + s[1:].lower()
    if s not in _ASE_ATOMIC_NUMBERS or s == "X":
        raise KeyError(f"unknown element {symbol!r}")
    return _ASE_ATOMIC_NUMBERS[s]


def block_type_index(name: str) -> int:
    """Vocabulary index of a residue / nucleotide / water name; unknown names map to <unk>."""
    n = name.strip().upper()
    n = RESIDUE_ALIASES.get(n, n)
    if n in WATER_NAMES:
        n = "HOH"
    try:
        return BLOCK_TYPES.index(n)
    except ValueError:
        return BLOCK_TYPES.index("<unk>")


def ligand_block_type(z: int) -> int:
    """Block type of a small-molecule atom block of element ``z``."""
    if not 0 < z <= MAX_ATOMIC_NUMBER:
        raise KeyError(f"atomic number {z} out of range")
    return LIGAND_OFFSET + z


def ligand_chemistry_position(aromatic: bool, hydrogens: int, charge: int) -> int:
    """Atom position code of a ligand heavy atom for models with ``ligand_chemistry``.

    Example:
        >>> i = ligand_chemistry_position(True, 1, 0)
        >>> LIGAND_CHEMISTRY_POSITIONS[i - NUM_ATOM_POSITIONS]
        'sm:ar:H1:0'
    """
    q = 0 if charge < 0 else (1 if charge == 0 else 2)
    return NUM_ATOM_POSITIONS + (12 if aromatic else 0) + 3 * min(max(int(hydrogens), 0), 3) + q


def block_type_name(index: int) -> str:
    """Inverse of :func:`block_type_index` / :func:`ligand_block_type`."""
    if index < LIGAND_OFFSET:
        return BLOCK_TYPES[index]
    return "LIG_" + ELEMENTS[index - LIGAND_OFFSET]


def atom_position_index(atom_name: str, element: str, polymer: bool) -> int:
    """Atom position code of a polymer atom name (PDB convention) or a small-molecule atom.

    For amino acids the code is the Greek-letter remoteness indicator (CA -> "A",
    CB -> "B", NZ -> "Z"; a hydrogen's PDB v2 name as its v3 name: 1HB -> "B"); backbone
    N, C, O map to ""; nucleotide phosphate atoms to "P" and sugar atoms (primed names)
    to "'".
    """
    if not polymer:
        return SMALL_MOLECULE_POSITION
    name = atom_name.strip().upper()
    name = name.lstrip("0123456789") or name  # PDB v2 hydrogen names: 1HB = HB1, 2HG1 = HG12
    if "'" in name or "*" in name:
        return _POS_INDEX["'"]
    if name in {"P", "OP1", "OP2", "OP3", "O1P", "O2P", "O3P"}:
        return _POS_INDEX["P"]
    el = element.strip().upper()
    rest = name[len(el):] if name.startswith(el) else name[1:]
    if not rest:
        return _POS_INDEX[""]
    code = rest[0]
    if code in {"A", "B", "G", "D", "E", "Z", "H"}:
        return _POS_INDEX[code]
    if code == "X" or code.isdigit():
        return _POS_INDEX[""]
    return _POS_INDEX["<unk>"]
