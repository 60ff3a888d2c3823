"""The plot of `inferq bench scale`: throughput against hosts, one panel per workload,
each with the ideal line (one host's rate times the host count).

matplotlib is an optional extra (``pip install 'inferq[plot]'``; ``dev.py`` installs
it): without it the benchmark still writes its JSON and table, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MISSING = "no plot: matplotlib is not installed (pip install 'inferq[plot]')"


def plot(result: Mapping[str, Any], path: Path) -> str | None:
    """Write the PNG to ``path``; None, or why no plot was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display here, none needed
        import matplotlib.pyplot as plt
    except ImportError:
        return MISSING
    workloads = list(result["units"])
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        counts = [int(n) for n in result[workload]]
        rates = [result[workload][str(n)] for n in counts]
        per_host = rates[0] / counts[0]
        ax.plot(counts, [per_host * n for n in counts], "--", color="grey", label="ideal")
        ax.plot(counts, rates, "o-", color="tab:blue", label="measured")
        for n, rate in zip(counts, rates, strict=True):
            eff = result["efficiency"][workload][str(n)]
            ax.annotate(f"{eff:.2f}", (n, rate), textcoords="offset points", xytext=(4, -12))
        failed = result.get("status", {}).get(workload) == "failed"
        # A failed curve is drawn, but says it is no result (the JSON's "failures" say why).
        ax.set_title(f"{workload}: FAILED measurement" if failed else workload)
        ax.set_xlabel(f"hosts ({result['sizes']['host_cpu']} core each)")
        ax.set_ylabel(result["units"][workload])
        ax.set_xticks(counts)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle("inferq bench scale: throughput vs simulated hosts (labels: efficiency)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
