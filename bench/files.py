"""File downloads: kubeplay's downloader against curl, the same files from the same nginx, in one run.

The simulator's nginx (TLS, loopback) serves N files. kubeplay fetches them with its Downloader (8 parallel,
streaming to .part, sha256 verified, renamed into place); the peer is `curl --parallel --parallel-max 8`
over the same URLs, which does NOT verify anything. Also shown: curl followed by `sha256sum -c`, which is
what a verified curl download costs. Both run in alternating order for several rounds (the machine's
load drifts within a run); the medians give the aggregate MiB/s and the ratio kubeplay/curl. Never
asserted anywhere.

    .venv/bin/python bench/files.py [--files 40] [--file-mib 8] [--jobs 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeplay.catalog.model import Checksum
from kubeplay.config.bundle import Mirror
from kubeplay.console import Output
from kubeplay.fetch.http import Downloader, DownloadItem
from kubeplay.fetch.mirrors import MirrorSet
from kubeplay.lab.upstream import UpstreamSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--file-mib", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-files-") as tmp_name:
        tmp = Path(tmp_name)
        with UpstreamSimulator(tmp / "upstream", registry_auth="none") as sim:
            urls: dict[str, str] = {}
            src = tmp / "payload"
            for i in range(args.files):
                src.write_bytes(os.urandom(args.file_mib << 20))
                url = f"https://dl.k8s.io/bench/v1/file{i:03d}.bin"
                urls[url] = sim.add_file_from(url, src)
            total = args.files * (args.file_mib << 20)

            mirrors = MirrorSet({"dl.k8s.io": Mirror(url=f"{sim.files_url}/dl.k8s.io", ca=sim.ca_cert)})
            peers = {
                "kubeplay": lambda out: run_kubeplay(urls, mirrors, out, args.jobs),
                "curl": lambda out: run_curl(urls, sim, out, args.jobs),
            }
            times: dict[str, list[float]] = {"kubeplay": [], "curl": [], "curl_plus_sha256sum": []}
            for rnd in range(args.rounds):
                # alternate who goes first: the machine's load drifts, and neither should always get the quieter half
                for name in list(peers) if rnd % 2 == 0 else list(peers)[::-1]:
                    out = tmp / f"{name}-{rnd}"
                    times[name].append(peers[name](out))
                    if name == "curl":
                        times["curl_plus_sha256sum"].append(times["curl"][-1] + check_curl(urls, out))
                    shutil.rmtree(out)

    mib = total / (1 << 20)
    t_kp, t_curl, t_sum = (statistics.median(times[k]) for k in ("kubeplay", "curl", "curl_plus_sha256sum"))
    result = {
        "files": args.files,
        "total_mib": mib,
        "rounds": args.rounds,
        "kubeplay_s": [round(t, 2) for t in times["kubeplay"]],
        "curl_parallel_s": [round(t, 2) for t in times["curl"]],
        "curl_plus_sha256sum_s": [round(t, 2) for t in times["curl_plus_sha256sum"]],
        "kubeplay_mib_s": round(mib / t_kp, 1),
        "curl_mib_s": round(mib / t_curl, 1),
        "ratio_kubeplay_vs_curl_rate": round(t_curl / t_kp, 2),
        "ratio_kubeplay_vs_curl_plus_sha256sum_rate": round(t_sum / t_kp, 2),
        "ratio_per_round": [round(c / k, 2) for k, c in zip(times["kubeplay"], times["curl"], strict=True)],
    }
    print(json.dumps(result, indent=2))
    print(
        f"kubeplay {mib / t_kp:.0f} MiB/s (sha256 verified) | curl --parallel {mib / t_curl:.0f} MiB/s (not verified) "
        f"-> {t_curl / t_kp:.2f}x of curl's rate | curl + sha256sum {mib / t_sum:.0f} MiB/s "
        f"-> {t_sum / t_kp:.2f}x (medians of {args.rounds} alternating rounds)"
    )


def run_kubeplay(urls: dict[str, str], mirrors: MirrorSet, out: Path, jobs: int) -> float:
    """Seconds for kubeplay's Downloader to fetch, verify and place every file (a fresh downloader each time)."""
    items = [
        DownloadItem(url, out / url.removeprefix("https://"), Checksum(algorithm="sha256", hex=sha))
        for url, sha in urls.items()
    ]
    started = time.monotonic()
    with Downloader(mirrors, out=Output(quiet=True), jobs=jobs, progress=False) as downloader:
        report = downloader.download_all(items)
    elapsed = time.monotonic() - started
    if report.failed:
        sys.exit(f"kubeplay failed: {report.failed[0]}")
    return elapsed


def run_curl(urls: dict[str, str], sim: UpstreamSimulator, out: Path, jobs: int) -> float:
    """Seconds for one `curl --parallel` over the same URLs (no verification)."""
    out.mkdir()
    argv = ["curl", "--parallel", "--parallel-max", str(jobs), "-sS", "--no-progress-meter", "--fail"]
    argv += ["--cacert", str(sim.ca_cert)]
    for i, url in enumerate(urls):
        argv += ["-o", str(out / f"file{i:03d}.bin"), sim.file_url(url)]
    started = time.monotonic()
    subprocess.run(argv, check=True, timeout=1800)
    return time.monotonic() - started


def check_curl(urls: dict[str, str], out: Path) -> float:
    """Seconds for `sha256sum -c` over curl's files (what verifying a curl download costs); checks them too."""
    (out / "SUMS").write_text("".join(f"{sha}  file{i:03d}.bin\n" for i, sha in enumerate(urls.values())))
    started = time.monotonic()
    subprocess.run(["sha256sum", "-c", "--quiet", "SUMS"], cwd=out, check=True, timeout=1800)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
