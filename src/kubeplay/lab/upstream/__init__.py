"""The upstream simulator: registry, token service, file server and faults on loopback, for tests and the demo.

`serve_release` puts everything `kubeplay build` plans for a kubespray tree on it; `python -m
kubeplay.lab.upstream` runs it by hand (README: "Try it without internet").
"""

from kubeplay.lab.upstream.images import ImageInfo
from kubeplay.lab.upstream.kubespray import KubesprayArchive, SyntheticDownload
from kubeplay.lab.upstream.release import ServedRelease, serve_release
from kubeplay.lab.upstream.simulator import UpstreamSimulator

__all__ = ["ImageInfo", "KubesprayArchive", "ServedRelease", "SyntheticDownload", "UpstreamSimulator", "serve_release"]
