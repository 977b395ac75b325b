"""Shared fixtures' data: real sheep sketches and tiny hparams for fast tests."""

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np

from sketch_model.config import HParams
from sketch_model.datasets import normalize, read_npz

ROOT = Path(__file__).resolve().parent.parent
SHEEP = ROOT / "assets" / "data" / "aaron_sheep.npz"
TINY = dict(dec_rnn_size=32, enc_rnn_size=16, z_size=8, num_mixture=3, batch_size=8,
            hyper_num_units=16, hyper_embedding_size=4)


def tiny_hparams(**changes) -> HParams:
    return HParams(**{**TINY, **changes})


def sheep(split: str = "train", n: int = 8, start: int = 0) -> list[np.ndarray]:
    """n real sheep sketches, normalised by the data's scale factor (18.52)."""
    return normalize(read_npz(SHEEP)[split][start:start + n], 18.5198)


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler], **attributes) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server of `handler` on 127.0.0.1 in a thread, with `attributes` set on it for
    the handler and `.url`, its address; shut down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
