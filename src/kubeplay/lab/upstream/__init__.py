"""The upstream simulator: registry, token service, file server and faults on loopback, for tests and the demo."""

from kubeplay.lab.upstream.images import ImageInfo
from kubeplay.lab.upstream.kubespray import KubesprayArchive, SyntheticDownload
from kubeplay.lab.upstream.simulator import UpstreamSimulator

__all__ = ["ImageInfo", "KubesprayArchive", "SyntheticDownload", "UpstreamSimulator"]
