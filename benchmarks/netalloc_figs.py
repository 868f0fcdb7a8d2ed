"""Figures of the ``netalloc`` paper study (``benchmarks/netalloc.py``): Figs 5-6
(exploration noise) and Fig 8 (explainability). Each needs the ``[plot]`` extra and
writes nothing without it (one warning)."""

import numpy as np
from absl import logging

from l2n_jax.usecases import netalloc


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed (pip install -e '.[plot]'): no PNGs")
        return None
    return plt



def plot_sensitivity(rows, curves, out):
    plt = _plt()
    if plt is None:
        return
    for site in dict.fromkeys(rows["site"]):
        r = rows[rows["site"] == site]
        fixed = r[r["noise"] == "fixed"].groupby("noise_std")["test_cost"].agg(["mean", "std"])
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
        ax.errorbar(fixed.index, fixed["mean"], yerr=fixed["std"], marker="o",
                    color="grey", label="fixed std")
        for name, color in (("none", "tab:red"), ("exp", "tab:green")):
            c = r.loc[r["noise"] == name, "test_cost"]
            ax.axhline(c.mean(), color=color,
                       label="no noise" if name == "none" else "exp. decay 0.1→0.001")
            ax.axhspan(c.mean() - c.std(), c.mean() + c.std(), color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("exploration noise std (scaled units)")
        ax.set_ylabel("test cost (mean ± std over seeds)")
        ax.set_title(f"netalloc {site}: Loss2Net vs exploration noise (Fig. 5)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"fig5_noise_{site}.png")
        plt.close(fig)

        cu = curves[curves["site"] == site]
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
        for (name, std), block in cu.groupby(["noise", "noise_std"], sort=False,
                                             dropna=False):
            mean = block.groupby("epoch")["valid_cost"].mean()
            if name == "fixed":
                ax.plot(mean.index, mean.values, color="grey", alpha=0.5, lw=0.8)
            else:
                ax.plot(mean.index, mean.values, lw=2,
                        color="tab:red" if name == "none" else "tab:green",
                        label="no noise" if name == "none" else "exp. decay")
        ax.plot([], [], color="grey", alpha=0.5, label="fixed stds")
        ax.set_yscale("log")
        ax.set_xlabel("co-training epoch")
        ax.set_ylabel("validation cost (true metric, mean over seeds)")
        ax.set_title(f"netalloc {site}: learning curves (Fig. 6)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"fig6_curves_{site}.png")
        plt.close(fig)


def plot_loss_error(errors, learned, err, omc, true, alpha, beta, site, out):
    """Fig 8 (a)-(b): the loss against the error, over each predictor's errors."""
    plt = _plt()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=150, sharex=True)
    colors = {"low": "tab:green", "high": "tab:purple"}
    bins = np.linspace(errors[0], errors[-1], 61)
    for ax, name in zip(axes, ("alpha_omc", "loss2net")):
        hist_ax = ax.twinx()
        for decile in ("low", "high"):
            hist_ax.hist(err[name][decile].reshape(-1), bins=bins, alpha=0.3,
                         color=colors[decile], density=True,
                         label=f"errors, {decile} 10% demand")
        hist_ax.set_ylabel("error density")
        if name == "alpha_omc":
            ax.plot(errors, omc, color="black", lw=2, label=f"α-OMC loss (α={alpha:g})")
            ax.set_title("(a) expert surrogate α-OMC")
        else:
            for decile in ("low", "high"):
                ax.plot(errors, learned[decile].mean(0), color=colors[decile], lw=2,
                        label=f"learned loss, {decile} 10% demand")
            ax.plot(errors, true, color="black", ls="--", lw=1, label="true cost")
            ax.set_title("(b) Loss2Net learned loss")
        ax.set_xlabel("error  ŷ − y  (scaled units)")
        ax.set_ylabel("loss")
        ax.set_zorder(hist_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = hist_ax.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center")
    fig.suptitle(f"netalloc {site}, beta = {beta:g}: loss and error distributions (Fig. 8)")
    fig.tight_layout()
    fig.savefig(out / "fig8_loss_error.png")
    plt.close(fig)


def plot_heatmap(l2n_fit, beta, site, out):
    """Fig 8 heat maps: the seed-mean learned loss and the true cost."""
    plt = _plt()
    if plt is None:
        return
    grid = np.linspace(0.0, 1.0, 101).astype(np.float32)
    dd, yy = np.meshgrid(grid, grid)  # rows: demand, columns: decision
    f = l2n_fit.shaper(dd.reshape(-1, 1), yy.reshape(-1, 1)).mean(0).reshape(dd.shape)
    x = dd - yy
    m = np.where(x < 0, beta, netalloc.GAMMA * x)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), dpi=150)
    vmax = float(max(f.max(), m.max()))
    for ax, z, title in ((axes[0], f, "learned loss f_l(decision, demand)"),
                         (axes[1], m, "true cost M(decision, demand)")):
        im = ax.imshow(z, origin="lower", extent=(0, 1, 0, 1), aspect="auto",
                       cmap="viridis", vmin=min(0.0, float(f.min())), vmax=vmax)
        ax.plot([0, 1], [0, 1], color="white", lw=0.8, ls="--")
        ax.set_xlabel("decision ŷ (scaled)")
        ax.set_ylabel("demand y (scaled)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
    fig.suptitle(f"netalloc {site}, beta = {beta:g} (seed-mean learned loss)")
    fig.tight_layout()
    fig.savefig(out / "fig8_heatmap.png")
    plt.close(fig)
