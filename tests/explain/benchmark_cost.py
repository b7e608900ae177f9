"""What explaining and predicting through the method interface cost (not a test: run it by hand).

    python tests/explain/benchmark_cost.py [--method msfa] [--profile quick] [--n 32] [--repeats 5]

Three ratios, each the harness's call over the bare network passes it cannot avoid, on the same
images (median of `--repeats` timings each):
- Grad-CAM: `method.explain` over one batched forward + backward of the network;
- deletion/insertion: `deletion_insertion_auc` over the 2 x steps batched forwards its curves need;
- predict: `method.predict_proba` over the network's batched forward + softmax.
Weights are random (the cost does not depend on training).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchbox.explain.faithfulness import deletion_insertion_auc
from benchbox.registry import get_card
from benchbox.training.data import model_inputs
from benchbox.training.runtime import resolve_device


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="msfa")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    resolve_device("cpu")
    card = get_card(args.method)
    method = card.create()
    method.build(card.settings(args.profile))
    size = card.input_size(args.profile)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, size, size, 3), dtype=np.uint8)
    targets = rng.integers(0, len(method.classes), args.n)
    network = method.networks()[0].eval()

    def bare_forward_backward():
        inputs = model_inputs(images, "cpu").requires_grad_(False)
        logits = network(inputs)
        logits.gather(1, torch.as_tensor(targets)[:, None]).sum().backward()

    def bare_forward(batch: np.ndarray):
        with torch.no_grad():
            return network(model_inputs(batch, "cpu")).softmax(1)

    explainer = method.explainers[0]
    maps = method.explain(images, targets, explainer)
    rows = {
        f"{explainer} (explain)": (median_seconds(lambda: method.explain(images, targets, explainer), args.repeats),
                                   median_seconds(bare_forward_backward, args.repeats)),
        "deletion/insertion": (
            median_seconds(lambda: deletion_insertion_auc(method.predict_proba, images, maps, targets, steps=args.steps), args.repeats),
            median_seconds(lambda: bare_forward(np.repeat(images, 2 * args.steps, axis=0)), args.repeats),
        ),
        "predict_proba": (median_seconds(lambda: method.predict_proba(images), args.repeats),
                          median_seconds(lambda: bare_forward(images), args.repeats)),
    }  # fmt: skip
    print(f"{args.method} ({args.profile}, {size} px, {args.n} images, {torch.get_num_threads()} threads)")
    for name, (harness, bare) in rows.items():
        print(f"{name:24s} harness {harness * 1000:8.1f} ms   bare passes {bare * 1000:8.1f} ms   ratio {harness / bare:.3f}")


if __name__ == "__main__":
    main()
