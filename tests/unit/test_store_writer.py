"""StoreWriter: an image is written into the store once, as soon as its last blob is in place, never before."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kubeplay.assemble.images import ResolvedImage, StoredImage, StoreWriter
from kubeplay.catalog.model import Checksum
from kubeplay.fetch.http import DownloadItem


def image(name: str, *blobs: str) -> ResolvedImage:
    fake: Any = None
    return ResolvedImage(fake, fake, name, fake, None, {}, [], {f"sha256:{b * 64}": 1 for b in blobs})


def blob(b: str) -> DownloadItem:
    return DownloadItem(f"https://r/{b}", Path(b), Checksum(algorithm="sha256", hex=b * 64))


class Recorder:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, img: ResolvedImage) -> StoredImage:
        with self.lock:
            self.written.append(img.repository)
        fake: Any = img.repository
        return fake  # type: ignore[no-any-return]


def test_images_are_written_when_their_last_blob_lands_and_never_with_a_failed_blob() -> None:
    written = Recorder()
    a, b, c, d, e = image("a", "x", "y"), image("b", "y"), image("c", "z"), image("d", "w"), image("e", "z")
    with StoreWriter(written, jobs=2) as writer:
        writer.expect(a)
        writer.expect(b)
        writer.expect(c)
        writer.blob_done(blob("y"), True)
        assert writer.stored(b) == "b"  # y was all b needed
        writer.blob_done(blob("w"), True)
        writer.expect(d)  # its only blob landed before it was resolved
        assert writer.stored(d) == "d"
        writer.blob_done(blob("z"), False)
        writer.expect(e)  # needs a blob that already failed
        writer.blob_done(blob("x"), True)
        assert writer.stored(a) == "a"
    assert sorted(written.written) == ["a", "b", "d"]  # c and e are reported as failed by the caller
