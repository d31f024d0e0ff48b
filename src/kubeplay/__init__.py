"""kubeplay: offline Kubernetes bundles from kubespray's own definitions."""

__version__ = "0.1.0"
