"""Suite-wide settings."""

from __future__ import annotations

import os

# Builds in tests skip the PyPI wheel download unless a test asks for wheels (test_build_kubespray,
# test_pack_install_sh); the wheel path has its own integration tests.
os.environ.setdefault("KUBEPLAY_WHEELS", "0")
