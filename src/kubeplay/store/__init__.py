"""Content-addressed blobs in the registry v2 storage layout that the distribution registry serves unchanged."""

from kubeplay.store.registry import RegistryStorage, RepositoryContent

__all__ = ["RegistryStorage", "RepositoryContent"]
