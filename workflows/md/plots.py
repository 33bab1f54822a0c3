"""``get-md md --plot``: energies and temperature of a run against time, from its ``md.csv``."""

from __future__ import annotations

import csv

import numpy as np

from ..figures import agg_figure, save_png


def plot_run(csv_path, png_path, title: str = "") -> None:
    """PNG of the potential and total energy (eV, relative to step 0's total) and the
    temperature (K) against time (ps), written atomically.

    Example:
        >>> plot_run("md_run/md.csv", "md_run/md.png")  # doctest: +SKIP
    """
    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    t = np.array([float(r["time_ps"]) for r in table])
    epot = np.array([float(r["potential_energy_eV"]) for r in table])
    etot = np.array([float(r["total_energy_eV"]) for r in table])
    temp = np.array([float(r["temperature_K"]) for r in table])
    ref = etot[0] if len(etot) else 0.0
    with agg_figure(2, 1, figsize=(7, 5), sharex=True) as (fig, (ax_e, ax_t)):
        ax_e.plot(t, epot - ref, lw=1.0, label="potential")
        ax_e.plot(t, etot - ref, lw=1.0, label="total")
        ax_e.set_ylabel("energy − E_total(0) (eV)")
        ax_e.legend(fontsize=8)
        ax_t.plot(t, temp, lw=1.0, color="C3")
        ax_t.set_ylabel("temperature (K)")
        ax_t.set_xlabel("time (ps)")
        save_png(fig, (ax_e, ax_t), png_path, title)


__all__ = ["plot_run"]
