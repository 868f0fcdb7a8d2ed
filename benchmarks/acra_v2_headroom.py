"""acra v2 head-room: baselines (a)-(c) against oracles (d)-(e), no Loss2Net.

    python benchmarks/acra_v2_headroom.py                 # default setting, all S
    python benchmarks/acra_v2_headroom.py --sweep         # + every explored setting
    python benchmarks/acra_v2_headroom.py --forecastability

Issue 19, item 4. Clients: ``usecases/acra_traffic.py``; emulator:
``usecases/acra_qoe.py``; policies: ``usecases/acra_policies.py``. On the test
split, for S in {1, 2, 4, 6, 8, 12}: (a) knapsack on the AR forecasts, (b) (a)
with one head-room factor tuned on validation, (c) per-client factors tuned on
validation, (d) the knapsack on the true demands, (e) the grid oracle knowing the
demands and the QoE; ``bind`` is the share of test periods in which (e) fills C.
Writes ``benchmarks/results/acra_v2/headroom.{csv,md}`` (and ``sweep.*``,
``forecastability.md``). Kept apart from ``benchmarks/acra_headroom.py``, the
v1 (PJM) head-room, whose committed output must stay as it is.
"""

import argparse
import pathlib
import time

import numpy as np
import pandas as pd

from l2n_jax.usecases import acra_policies as pol, acra_qoe as qoe, acra_traffic as tr

OUT = pathlib.Path(__file__).resolve().parent / "results" / "acra_v2"
SIZES = (1, 2, 4, 6, 8, 12)
# Every setting explored (name -> (horizon, emulator overrides)); "default" first.
SETTINGS = {
    "default": (12, {}),
    "H1": (1, {}),
    "H72": (72, {}),
    "no_scale_breakers": (12, {"fixed": 0.0, "min_rate": 0.0}),
    "fixed0.15": (12, {"fixed": 0.15}),
    "min_rate0.3": (12, {"min_rate": 0.3}),
    "C0.2S": (12, {"capacity_fraction": 0.2}),
    "all_voip": (12, {"all_voip": True}),
    "H72+C0.3S": (72, {"capacity_fraction": 0.3}),
    "H72+all_voip": (72, {"all_voip": True}),
}


def run_one(s: int, horizon: int, overrides: dict) -> dict:
    """Profits of (a)-(e) on the test split for one S and setting."""
    kw = dict(overrides)
    if "capacity_fraction" in kw:
        kw["capacity"] = kw.pop("capacity_fraction") * s
    if kw.pop("all_voip", False):
        kw["classes"] = np.zeros(s, np.int32)
    t = time.time()
    fc = tr.forecasts(s, horizon)
    p = qoe.params(s, horizon, **kw)
    (fv, yv), (ft, yt) = fc["valid"], fc["test"]
    common, per = pol.tune_factors(fv, yv, p)
    decisions = {
        "a": pol.knapsack_policy(ft, p), "b": pol.knapsack_policy(ft, p, common),
        "c": pol.knapsack_policy(ft, p, per), "d": pol.knapsack_policy(yt, p),
        "e": pol.grid_oracle(yt, p),
    }
    row = {"S": s, "H": horizon, "periods": len(yt)}
    for k, a in decisions.items():
        r = qoe.evaluate(a, yt, p)
        row[k] = r["normalised_profit"]
        row[f"accepted_{k}"] = r["accepted"]
    row["e/a"], row["e/c"] = row["e"] / row["a"], row["e"] / row["c"]
    row["bind_e"] = float(np.mean(decisions["e"].sum(1) > p.capacity - pol.CELL + 1e-6))
    row["common_factor"] = common
    row["factors"] = " ".join(f"{m:.2f}" for m in per)
    row["seconds"] = round(time.time() - t, 1)
    return row


def table(df: pd.DataFrame) -> str:
    lines = ["| setting | S | (a) knapsack | (b) +1 factor | (c) +per-client | "
             "(d) oracle demand | (e) oracle demand+QoE | (e)/(a) | (e)/(c) | "
             "bind (e) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(
            f"| {r.setting} | {r.S} | {r.a:.4f} | {r.b:.4f} | {r.c:.4f} | {r.d:.4f} | "
            f"{r.e:.4f} | {r['e/a']:.3f} | {r['e/c']:.3f} | {r.bind_e:.2f} |")
    return "\n".join(lines) + "\n"


def headroom(names, sizes, stem: str) -> pd.DataFrame:
    rows = []
    for name in names:
        horizon, overrides = SETTINGS[name]
        for s in sizes:
            rows.append({"setting": name, **run_one(s, horizon, overrides)})
            r = rows[-1]
            print(f"{name} S={s}: a={r['a']:.4f} c={r['c']:.4f} e={r['e']:.4f} "
                  f"e/c={r['e/c']:.3f} bind={r['bind_e']:.2f} ({r['seconds']} s)",
                  flush=True)
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / f"{stem}.csv", index=False)
    cmd = "python benchmarks/acra_v2_headroom.py" + (" --sweep" if stem == "sweep" else "")
    (OUT / f"{stem}.md").write_text(
        f"Normalised test profit (higher is better). Command: `{cmd}`\n\n" + table(df))
    return df


def _mae(f, y):
    return float(np.abs(f - y).mean() / y.mean())


def pjm_forecastability() -> dict:
    """Hourly PJM (the v1 clients), one slot = one hour ahead, computed the same way."""
    from l2n_jax.usecases import pjm
    frame = pjm.read_common(pjm.CLIENT_REGIONS, start="2013-06-01 01:00")
    v = frame.to_numpy().T  # [S, T]
    n = v.shape[1]
    cut = (int(0.7 * n), int(0.8 * n))
    v = v / v[:, : cut[0]].max(1, keepdims=True)
    lags = 24
    idx = {"train": np.arange(lags, cut[0]), "test": np.arange(cut[1], n)}
    xy = {k: (np.stack([v[:, i - lags : i] for i in t]), v[:, t].T[..., None])
          for k, t in idx.items()}
    w = tr.fit_ar(*xy["train"])
    x, y = xy["test"]
    ratio = v[:, cut[1]:].max(1)
    return {"family": "pjm (hourly, 10 regions)", "persistence_1slot": _mae(
        x[..., -1:], y), "ar_1slot": _mae(tr.predict_ar(w, x), y),
        "peak_ratio": f"{ratio.min():.2f}-{ratio.max():.2f}"}


def forecastability() -> str:
    fc = tr.forecasts(tr.MAX_CLIENTS, 12)
    c = tr.load_clients(tr.MAX_CLIENTS)
    x, y = tr.windows(c.demand, "test", 12)
    f = fc["test"][0]
    rows = []
    for fam in tr.FILES:
        j = [i for i, q in enumerate(c.families) if q == fam]
        last = x[:, j, tr.LAGS - 1 : tr.LAGS]
        rows.append({"family": fam, "persistence_1slot": _mae(last, y[:, j, :1]),
                     "ar_1slot": _mae(f[:, j, :1], y[:, j, :1]),
                     "persistence_1h": _mae(last, y[:, j, 11:12]),
                     "ar_1h": _mae(f[:, j, 11:12], y[:, j, 11:12]),
                     "peak_ratio": "-".join(f"{v:.2f}" for v in (c.peak_ratio[j].min(),
                                                             c.peak_ratio[j].max()))})
    rows.append(pjm_forecastability())
    lines = ["| clients | persistence, 1 slot | AR, 1 slot | persistence, 1 h | AR, 1 h |"
             " test peak / train peak (min-max) |", "|---|---|---|---|---|---|"]
    for r in rows:
        g = lambda k: f"{r[k]:.3f}" if k in r else "= 1 slot"
        lines.append(f"| {r['family']} | {g('persistence_1slot')} | {g('ar_1slot')} | "
                     f"{g('persistence_1h')} | {g('ar_1h')} | "
                     f"{r['peak_ratio']} |")
    text = ("MAE / mean demand on the test split (S = 12 clients; one slot = 5 min, "
            "PJM: 1 h). Command: `python benchmarks/acra_v2_headroom.py "
            "--forecastability`\n\n" + "\n".join(lines) + "\n")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "forecastability.md").write_text(text)
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true", help="every explored setting")
    ap.add_argument("--forecastability", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = ap.parse_args()
    if args.forecastability:
        print(forecastability())
        return
    if args.sweep:
        headroom([n for n in SETTINGS if n != "default"], (6, 12), "sweep")
    else:
        headroom(["default"], args.sizes, "headroom")


if __name__ == "__main__":
    main()
