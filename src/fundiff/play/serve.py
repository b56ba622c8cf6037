"""Start the playground (``fundiff play``): check Gradio and the port, load the model once, serve offline.

Offline means: Gradio's analytics are off, the theme's fonts are the ones Gradio ships (no font service), no share
link, and every file the app writes (uploads, drawings, results) goes into one temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from pathlib import Path

from fundiff.errors import UserError

INSTALL_HINT = 'pip install "fundiff[play]" (in a clone of fundiff: pip install -e ".[play]")'


def check_gradio() -> None:
    """Gradio is importable, or one line saying how to get it (imported with its analytics off)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError(f"fundiff play needs Gradio, an optional extra: {INSTALL_HINT}") from None


def check_port(host: str, port: int) -> None:
    """``port`` is free on ``host`` (0 lets the system choose), or one line saying what to do."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: a closed one's port is free
            s.bind((host, port))
    except socket.gaierror:
        raise UserError(f"--host {host!r} is not an address of this machine; use 127.0.0.1 (this machine only) or "
                        "0.0.0.0 (every network it is on)") from None
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port") from None


def workdir() -> Path:
    """A new temporary folder for the app's files, removed when the process exits; Gradio's cache goes in it."""
    folder = Path(tempfile.mkdtemp(prefix="fundiff-play-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    return folder


def serve(spec: str, host: str = "127.0.0.1", port: int = 7860, device: str = "auto", **load_options: object) -> None:
    """Load model ``spec`` and serve its playground at http://host:port until Ctrl-C."""
    folder = workdir()  # before Gradio is imported: it reads GRADIO_TEMP_DIR then
    check_gradio()
    check_port(host, port)
    import gradio as gr

    from fundiff.models import load
    from fundiff.play.app import CSS, App
    from fundiff.play.ops import Playground
    from fundiff.play.worker import TorchWorker

    worker = TorchWorker()  # the model is loaded on the thread that will run it (fundiff.play.worker)
    pg = Playground(worker.run(lambda: load(spec, device, **load_options)), spec)
    demo = App(pg, folder / "inputs", worker).build()
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(server_name=host, server_port=port or None, share=False, quiet=True, prevent_thread_lock=True,
                show_error=False, css=CSS, theme=gr.themes.Default(), footer_links=[],
                allowed_paths=[str(folder)])
    print(f"fundiff playground for model {spec}: {demo.local_url}  (Ctrl-C stops it)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
