"""The route of one ``l2n_train`` run through the project's modules.

    python benchmarks/module_route.py [-- l2n_train flags]   # default: netalloc, quick

Runs ``l2n_train`` in-process under ``sys.setprofile`` and records every call from a
function of one project module (``l2n_jax.*``, ``usecases.*``) into a function of
another. The route is the list of distinct such edges (caller function -> callee
function) in the order they are first taken. Reported: the number of edges
(module crossings), and how many of them enter a module the route had already
entered before (returns to a module already visited); also the module-level
transitions (distinct caller module -> callee module pairs). Writes the route to
``--out`` (JSON) and prints the counts.
"""

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

PROJECT = ("l2n_jax", "usecases")
DEFAULT_ARGS = ["--usecase=netalloc", "--quick", "--seeds=1", "--sites=eu",
                "--workdir=/tmp/module_route_run", "--overwrite"]


def _module(frame):
    name = frame.f_globals.get("__name__", "")
    return name if name.split(".")[0] in PROJECT else None


def trace(argv):
    edges, seen = [], set()

    def profile(frame, event, arg):
        if event != "call":
            return
        callee = _module(frame)
        caller = _module(frame.f_back) if frame.f_back is not None else None
        if callee is None or caller is None or callee == caller:
            return
        edge = (f"{caller}.{frame.f_back.f_code.co_name}", f"{callee}.{frame.f_code.co_name}")
        if edge not in seen:
            seen.add(edge)
            edges.append(edge)

    from l2n_jax import cli

    sys.argv = ["l2n_train", *argv]
    sys.setprofile(profile)
    try:
        cli.main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.setprofile(None)
    return edges


def summarise(edges):
    entered, returns = set(), 0
    for caller, callee in edges:
        module = callee.rsplit(".", 1)[0]
        returns += module in entered
        entered.add(module)
    pairs = list(dict.fromkeys((a.rsplit(".", 1)[0], b.rsplit(".", 1)[0]) for a, b in edges))
    back = sum((b, a) in pairs for a, b in pairs) // 2
    return {"crossings": len(edges), "returns_to_visited_module": returns,
            "modules": len(entered), "module_pairs": len(pairs),
            "module_pairs_both_ways": back}


def main():
    args = sys.argv[1:]
    out = "/tmp/module_route.json"
    if args and args[0].startswith("--out="):
        out, args = args[0].split("=", 1)[1], args[1:]
    edges = trace(args or DEFAULT_ARGS)
    counts = summarise(edges)
    with open(out, "w") as f:
        json.dump({"counts": counts, "route": edges}, f, indent=1)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
