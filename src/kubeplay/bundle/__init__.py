"""Bundle layout, manifest, SHA256SUMS, tar.zst pack/unpack, split parts, verify, safe extract."""
