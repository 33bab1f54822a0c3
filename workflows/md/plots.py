"""``get-md md --plot``: energies and temperature of a run against time, from its ``md.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from get_md.atomic import atomic_path


def plot_run(csv_path, png_path, title: str = "") -> None:
    """PNG of the potential and total energy (eV, relative to step 0's total) and the
    temperature (K) against time (ps), written atomically.

    Example:
        >>> plot_run("md_run/md.csv", "md_run/md.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    t = np.array([float(r["time_ps"]) for r in table])
    epot = np.array([float(r["potential_energy_eV"]) for r in table])
    etot = np.array([float(r["total_energy_eV"]) for r in table])
    temp = np.array([float(r["temperature_K"]) for r in table])
    ref = etot[0] if len(etot) else 0.0
    fig, (ax_e, ax_t) = plt.subplots(2, 1, figsize=(7, 5), dpi=120, sharex=True)
    try:
        ax_e.plot(t, epot - ref, lw=1.0, label="potential")
        ax_e.plot(t, etot - ref, lw=1.0, label="total")
        ax_e.set_ylabel("energy − E_total(0) (eV)")
        ax_e.legend(fontsize=8)
        ax_t.plot(t, temp, lw=1.0, color="C3")
        ax_t.set_ylabel("temperature (K)")
        ax_t.set_xlabel("time (ps)")
        for ax in (ax_e, ax_t):
            ax.grid(alpha=0.3)
        if title:
            ax_e.set_title(title, fontsize=9)
        fig.tight_layout()
        with atomic_path(Path(png_path)) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


__all__ = ["plot_run"]
