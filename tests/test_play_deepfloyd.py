"""The playground on a DeepFloyd IF model (the tiny random one of IF's architecture; the real weights cannot be had
here): prompts instead of classes, a long job shows its progress and stops when cancelled, and the app serves the
next request at once."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("gradio")
pytest.importorskip("sentencepiece")
from gradio_client import Client  # noqa: E402
from play_server import play_server  # noqa: E402
from tiny_if import tiny_if  # noqa: E402

PROMPT = "an oil painting of a snowy mountain village"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tiny = tiny_if()
    log = tmp_path_factory.mktemp("play-if") / "play.log"
    with play_server("--model", str(tiny.stage1), "--prompt-cache", str(tiny.cache), log=log) as url:
        yield url, log


def test_prompts_are_text_and_every_endpoint_answers(server):
    client = Client(server[0], verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    condition = api["/generate"]["parameters"][0]
    assert condition["component"] == "Textbox" and condition["parameter_default"] == "a high quality photo"
    samples, _, took, command = client.predict(PROMPT, 1, 7, 5, 0, api_name="/generate")
    assert len(samples) == 1 and command.startswith("fundiff generate --model ") and f"--prompt '{PROMPT}'" in command
    assert "--steps 5" in command


def test_a_long_job_shows_progress_stops_when_cancelled_and_the_next_is_served(server):
    url, log = server
    client = Client(url, verbose=False)
    job = client.submit(PROMPT, 8, 7, 1000, 0, api_name="/generate")
    steps, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and len(steps) < 2:
        status = job.status()
        for unit in status.progress_data or []:
            if unit.index is not None and (not steps or unit.index > steps[-1][1]):
                steps.append((time.monotonic(), unit.index))
        time.sleep(0.1)
    assert len(steps) >= 2, "no progress shown"
    (t0, s0), (t1, s1) = steps[0], steps[-1]
    remaining_s = (1000 - s1) * (t1 - t0) / max(1, s1 - s0)  # what the job would still take
    job.cancel()
    start = time.monotonic()
    quick = client.predict(PROMPT, 1, 7, 3, 0, api_name="/generate")
    waited = time.monotonic() - start
    print(f"cancelled at step {s1}: the rest would take {remaining_s:.1f} s; the next request took {waited:.1f} s")
    assert quick[-1].endswith("--seed 0") and waited < max(10.0, remaining_s / 3), (waited, remaining_s)
    assert "Traceback" not in log.read_text()
