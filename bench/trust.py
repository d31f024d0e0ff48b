"""What signing and the SBOM add to a build: the image bench's bundle built with and without them.

Same simulator registry and images as bench/images.py (multi-arch images sharing base layers). Two
variants of the real `kubeplay build`, each as its own process, alternating for several rounds:
  - trust: as shipped, with `--sign KEY` (sbom.cdx.json and its SHA256SUMS line, SHA256SUMS.sig, and
    the lookup of upstream signature artifacts: none exist here, so this is the cost of asking);
  - plain: the same build with the SBOM steps replaced by no-ops, no --sign, --no-signatures (kubeplay before).
Each variant does a full build into a fresh directory, then a no-change rebuild of it. Prints medians,
the ratios trust / plain (target: at most 1.05 for both), and, measured in-process on the last trust
bundle, the exact seconds of the SBOM (fresh for a full build, reused for a no-change rebuild), its
SHA256SUMS line and signing, against the plain medians
(the wall-time ratios carry the machine's noise; these do not). Never asserted anywhere.

    .venv/bin/python bench/trust.py [--images 30] [--own-mib 3] [--base-mib 8] [--jobs 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tests.build_fixture import image_artifact, kubespray_archive, make_plan, plan_json, write_spec  # noqa: E402

from images import push_images, run_child  # noqa: E402
from kubeplay.bundle.manifest import SUMS_NAME, add_to_sha256sums, read_manifest, read_sha256sums  # noqa: E402
from kubeplay.bundle.sbom import SBOM_NAME, build_sbom, write_sbom  # noqa: E402
from kubeplay.bundle.trust import generate_key, load_private_key, sign_bundle  # noqa: E402
from kubeplay.lab.upstream import UpstreamSimulator  # noqa: E402

# `kubeplay ARGS…` with the plan of argv[1]; argv[2] == "plain" replaces the SBOM steps with no-ops.
DRIVER = """
import sys
import kubeplay.assemble.pipeline as pipeline
from kubeplay.catalog.model import Plan
plan = Plan.model_validate_json(open(sys.argv[1]).read())
pipeline.cached_plan = lambda spec, tree, identity, state: plan
if sys.argv[2] == "plain":  # no SBOM, and SHA256SUMS as the first pass wrote it
    import hashlib
    pipeline.write_sbom = lambda *args: None
    pipeline.add_to_sha256sums = lambda bundle, rel: hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()
sys.argv = ["kubeplay", *sys.argv[3:]]
from kubeplay.cli.app import main
main()
"""


def build(plan_file: Path, spec: Path, out: Path, variant: str, key: Path, jobs: int) -> float:
    argv = [sys.executable, "-c", DRIVER, str(plan_file), variant, "--quiet", "build", str(spec), "-o", str(out)]
    argv += ["--jobs", str(jobs), "--no-wheels"] + (["--sign", str(key)] if variant == "trust" else ["--no-signatures"])
    elapsed, _rss, done = run_child(argv)
    if done.returncode != 0:
        sys.exit(f"kubeplay build ({variant}) failed:\n{done.stderr}")
    return elapsed


def direct_cost(bundle: Path, key: Path) -> dict[str, float]:
    """Seconds of each trust step on a built bundle, in this process (the SBOM fresh, and from the cache)."""
    manifest = read_manifest(bundle)
    sums = read_sha256sums(bundle / SUMS_NAME)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    build_sbom(bundle, manifest, sums)  # the first call also imports cyclonedx-python-lib
    timings["sbom_fresh_s"] = time.perf_counter() - started
    started = time.perf_counter()
    write_sbom(bundle, manifest, sums)  # the build left its cache: what a no-change rebuild does
    timings["sbom_reused_s"] = time.perf_counter() - started
    started = time.perf_counter()
    add_to_sha256sums(bundle, SBOM_NAME)
    timings["sums_line_s"] = time.perf_counter() - started
    started = time.perf_counter()
    sign_bundle(bundle, load_private_key(key))
    timings["sign_s"] = time.perf_counter() - started
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--own-mib", type=int, default=3)
    parser.add_argument("--base-mib", type=int, default=8)
    parser.add_argument("--bases", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    times: dict[str, list[float]] = {f"{v}_{k}": [] for v in ("trust", "plain") for k in ("full", "rebuild")}
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-trust-") as tmp_name:
        tmp = Path(tmp_name)
        key = tmp / "key"
        generate_key(key, "bench@kubeplay")
        with UpstreamSimulator(tmp / "upstream", registry_auth="token") as sim:
            refs = [f"registry.k8s.io/bench/app{i:02d}:v1.0.{i}" for i in range(args.images)]
            print(f"pushing {len(refs)} images ...", flush=True)
            push_images(sim, refs, args.bases, args.base_mib, args.own_mib)
            archive, sha = kubespray_archive(tmp / "src")
            spec = write_spec(tmp, sim, str(archive), sha)
            plan_file = tmp / "plan.json"
            plan_file.write_text(
                plan_json(make_plan([], [image_artifact(r, name=f"app{i}") for i, r in enumerate(refs)]))
            )
            cost: dict[str, float] = {}
            for rnd in range(args.rounds):
                for variant in ("trust", "plain") if rnd % 2 == 0 else ("plain", "trust"):
                    out = tmp / f"{variant}-{rnd}"
                    times[f"{variant}_full"].append(build(plan_file, spec, out, variant, key, args.jobs))
                    times[f"{variant}_rebuild"].append(build(plan_file, spec, out, variant, key, args.jobs))
                    if variant == "trust" and rnd == args.rounds - 1:
                        cost = direct_cost(out, key)
                    shutil.rmtree(out)
    medians = {name: statistics.median(values) for name, values in times.items()}
    steps = cost["sums_line_s"] + cost["sign_s"]
    result = {
        "images": args.images,
        "rounds": args.rounds,
        **{f"{name}_s": [round(t, 2) for t in values] for name, values in times.items()},
        "ratio_full_trust_vs_plain": round(medians["trust_full"] / medians["plain_full"], 3),
        "ratio_rebuild_trust_vs_plain": round(medians["trust_rebuild"] / medians["plain_rebuild"], 3),
        **{k: round(v, 4) for k, v in cost.items()},
        "direct_added_vs_plain_full": round((cost["sbom_fresh_s"] + steps) / medians["plain_full"], 3),
        "direct_added_vs_plain_rebuild": round((cost["sbom_reused_s"] + steps) / medians["plain_rebuild"], 3),
    }
    print(json.dumps(result, indent=2))
    print(
        f"full build: trust {medians['trust_full']:.2f}s vs plain {medians['plain_full']:.2f}s "
        f"(x{result['ratio_full_trust_vs_plain']}); no-change rebuild: trust {medians['trust_rebuild']:.2f}s vs "
        f"plain {medians['plain_rebuild']:.2f}s (x{result['ratio_rebuild_trust_vs_plain']}); measured directly, "
        f"SBOM + its SHA256SUMS line + signing add {result['direct_added_vs_plain_full']:.1%} to a full build and "
        f"{result['direct_added_vs_plain_rebuild']:.1%} to a no-change rebuild (medians of {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
