"""QAOA MaxCut on a 3-regular graph, depth 1 to 3, each depth warm-started from the last.

python examples/qaoa_sweep.py [--nodes 8] [--restarts 2]
"""

import argparse

import networkx as nx

from qflow.algorithms import qaoa_maxcut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--max-p", type=int, default=3)
    args = parser.parse_args()

    graph = nx.random_regular_graph(3, args.nodes, seed=7)
    print(f"{'p':>2} {'expected cut':>13} {'ratio':>6} {'best cut':>9} {'max cut':>8}")
    previous = None
    for p in range(1, args.max_p + 1):
        res = qaoa_maxcut(
            graph,
            p=p,
            steps=60,
            pack=60,
            warm_start=previous or False,
            restarts=args.restarts if previous is None else 1,
            seed=1,
        )
        print(
            f"{p:>2} {res.expected_cut:>13.4f} {res.ratio:>6.3f} {res.best_cut:>9d} "
            f"{res.max_cut:>8d}"
        )
        previous = res


if __name__ == "__main__":
    main()
