"""File downloads: kubeplay's downloader against curl, the same files from the same nginx, in one run.

The simulator's nginx (TLS, loopback) serves N files. kubeplay fetches them with its Downloader (8 parallel,
streaming to .part, sha256 verified, renamed into place); the peer is `curl --parallel --parallel-max 8`
over the same URLs (no verification). Prints aggregate MiB/s of both and the ratio kubeplay/curl; also
curl followed by `sha256sum -c`, which is what a verified curl download costs. Never asserted anywhere.

    .venv/bin/python bench/files.py [--files 40] [--file-mib 8] [--jobs 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeplay.catalog.model import Checksum
from kubeplay.config.bundle import Mirror
from kubeplay.fetch.http import Downloader, DownloadItem
from kubeplay.fetch.mirrors import MirrorSet
from kubeplay.lab.upstream import UpstreamSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--file-mib", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=8)
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
            items = [
                DownloadItem(
                    url, tmp / "kubeplay" / url.removeprefix("https://"), Checksum(algorithm="sha256", hex=sha)
                )
                for url, sha in urls.items()
            ]
            started = time.monotonic()
            with Downloader(mirrors, jobs=args.jobs, progress=False) as downloader:
                report = downloader.download_all(items)
            t_kp = time.monotonic() - started
            if report.failed:
                sys.exit(f"kubeplay failed: {report.failed[0]}")

            curl_dir = tmp / "curl"
            curl_dir.mkdir()
            argv = [
                "curl",
                "--parallel",
                "--parallel-max",
                str(args.jobs),
                "-sS",
                "--no-progress-meter",
                "--fail",
                "--cacert",
                str(sim.ca_cert),
            ]
            for i, url in enumerate(urls):
                argv += ["-o", str(curl_dir / f"file{i:03d}.bin"), sim.file_url(url)]
            started = time.monotonic()
            subprocess.run(argv, check=True, timeout=1800)
            t_curl = time.monotonic() - started
            sums = "".join(f"{sha}  file{i:03d}.bin\n" for i, sha in enumerate(urls.values()))
            (curl_dir / "SUMS").write_text(sums)
            started = time.monotonic()
            subprocess.run(["sha256sum", "-c", "--quiet", "SUMS"], cwd=curl_dir, check=True, timeout=1800)
            t_sum = time.monotonic() - started
            assert all(
                hashlib.sha256((curl_dir / f"file{i:03d}.bin").read_bytes()).hexdigest() == sha
                for i, sha in enumerate(urls.values())
            )

    mib = total / (1 << 20)
    result = {
        "files": args.files,
        "total_mib": mib,
        "kubeplay_s": round(t_kp, 2),
        "kubeplay_mib_s": round(mib / t_kp, 1),
        "curl_parallel_s": round(t_curl, 2),
        "curl_mib_s": round(mib / t_curl, 1),
        "curl_plus_sha256sum_s": round(t_curl + t_sum, 2),
        "ratio_kubeplay_vs_curl_rate": round(t_curl / t_kp, 2),
        "ratio_kubeplay_vs_curl_plus_sha256sum_rate": round((t_curl + t_sum) / t_kp, 2),
    }
    print(json.dumps(result, indent=2))
    print(
        f"kubeplay {mib / t_kp:.0f} MiB/s (verified) | curl --parallel {mib / t_curl:.0f} MiB/s "
        f"(unverified) -> {t_curl / t_kp:.2f}x of curl's rate | curl + sha256sum {mib / (t_curl + t_sum):.0f} MiB/s"
    )


if __name__ == "__main__":
    main()
