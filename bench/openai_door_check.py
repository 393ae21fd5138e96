"""Open WebUI through ChatLima's OpenAI-compatible door, figures compared (one command, not in CI).

    .venv/bin/python bench/openai_door_check.py --owui-venv /tmp/owui-venv

It starts `bench/upstream.py` (a local OpenAI-compatible model server), ChatLima on a fresh SQLite
database with that upstream as its OpenAI endpoint (one daphne), signs up a user and makes a
ChatLima API token named "Open WebUI", then starts Open WebUI (installed from PyPI in its own
virtualenv outside the repo, `bench/peer_compare.py`'s `install_open_webui`; its own data directory
in a temporary folder) with its OpenAI connection pointed at ChatLima's `/v1` and that token as
its key. It sends one chat through Open WebUI's own API (`POST /api/chat/completions`), once
without and once with streaming, and prints the usage Open WebUI answered next to ChatLima's usage
row for the same exchange (read back through ChatLima's usage API with the same token). The
figures must match; the exit status says whether they do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_compare import OWUI_ENV, install_open_webui
from ws_load import free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = "bench-model"
QUESTION = "What does ChatLima count for every exchange?"
PASSWORD = "open-webui-check-password-1"
FIGURES = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")


def wait_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def chatlima_env(database: Path, upstream_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "DATABASE_URL": f"sqlite:///{database}", "DJANGO_SETTINGS_MODULE": "chatlima.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": upstream_url,
        "OPENAI_FREE": "1", "PYTHONUNBUFFERED": "1",
    })
    return env


def owui_figures(usage: dict | None) -> dict[str, int | None]:
    """OpenAI's usage object as Open WebUI passed it on, in the contract's names."""
    usage = usage or {}
    return {
        "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        "reasoning_tokens": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
    }


def streamed_usage(response: httpx.Response) -> tuple[str, dict | None]:
    text, usage = "", None
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        for choice in event.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
        if event.get("usage"):
            usage = event["usage"]
    return text, usage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owui-venv", default=str(Path.home() / ".cache" / "chatlima-bench" / "open-webui"),
                        help="Open WebUI's own virtualenv (made if missing), outside the repo")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (both servers' logs)")
    args = parser.parse_args()

    exe = install_open_webui(Path(args.owui_venv))
    work = Path(tempfile.mkdtemp(prefix="chatlima-door-check-"))
    processes: list[subprocess.Popen] = []
    try:
        up_port = free_port()
        upstream_url = f"http://127.0.0.1:{up_port}/v1"
        processes.append(subprocess.Popen([PY, str(ROOT / "bench" / "upstream.py"), "--port", str(up_port),
                                           "--chunks", str(args.chunks), "--delay-ms", "5"]))
        env = chatlima_env(work / "chatlima.sqlite3", upstream_url)
        subprocess.run([PY, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
        wait_http(upstream_url + "/models", 20, processes[0])
        subprocess.run([PY, "manage.py", "refresh_models"], cwd=ROOT, env=env, check=True, capture_output=True)
        port = free_port()
        chatlima_log = open(work / "chatlima.log", "w")  # noqa: SIM115 - closed with the run
        processes.append(subprocess.Popen(
            [str(Path(PY).with_name("daphne")), "-b", "127.0.0.1", "-p", str(port), "chatlima.asgi:application"],
            cwd=ROOT, env=env, stdout=chatlima_log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", 60, processes[-1])
        httpx.post(base + "/api/v1/auth/register", json={"username": "owui-check", "password": PASSWORD}).raise_for_status()
        issued = httpx.post(base + "/api/v1/auth/token",
                            json={"username": "owui-check", "password": PASSWORD, "name": "Open WebUI"})
        issued.raise_for_status()
        token = issued.json()["token"]
        print(f"ChatLima at {base}/v1, API token 'Open WebUI' ({token[:8]}...), model {MODEL}")

        owui_port = free_port()
        owui_data = work / "open-webui"
        owui_data.mkdir()
        owui_env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
        owui_env.update({**OWUI_ENV, "DATA_DIR": str(owui_data), "OPENAI_API_BASE_URL": f"{base}/v1",
                         "OPENAI_API_KEY": token, "ENABLE_PERSISTENT_CONFIG": "False"})
        owui_log = open(work / "open-webui.log", "w")  # noqa: SIM115 - closed with the run
        processes.append(subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(owui_port)],
                                          cwd=owui_data, env=owui_env, stdout=owui_log, stderr=subprocess.STDOUT))
        owui = f"http://127.0.0.1:{owui_port}"
        print("starting Open WebUI (a minute or two)...", flush=True)
        wait_http(owui + "/health", 600, processes[-1])
        with httpx.Client(timeout=120) as http:
            session = http.post(owui + "/api/v1/auths/signin", json={"email": "", "password": ""}).json()["token"]
            headers = {"Authorization": f"Bearer {session}"}
            models = [m["id"] for m in http.get(owui + "/api/models", headers=headers).json()["data"]]
            print(f"Open WebUI lists ChatLima's models: {', '.join(models)}")
            answers = []
            plain = http.post(owui + "/api/chat/completions", headers=headers, json={
                "model": MODEL, "stream": False, "messages": [{"role": "user", "content": QUESTION}]})
            plain.raise_for_status()
            body = plain.json()
            answers.append(("not streamed", body["choices"][0]["message"]["content"], body.get("usage")))
            with http.stream("POST", owui + "/api/chat/completions", headers=headers, json={
                "model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answers[0][1]},
                             {"role": "user", "content": "And again, streamed?"}]}) as streamed:
                streamed.raise_for_status()
                text, usage = streamed_usage(streamed)
            answers.append(("streamed", text, usage))
        time.sleep(0.5)
        history = httpx.get(base + "/api/v1/usage/history", headers={"Authorization": f"Bearer {token}"}).json()["history"]
        rows = list(reversed(history))  # oldest first, as sent
    finally:
        stop_processes(*reversed(processes))
        if args.keep:
            print(f"logs and databases kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    matched = len(rows) == len(answers)
    print(f"\nChatLima usage rows: {len(rows)} (one per request through Open WebUI)")
    for (kind, text, usage), row in zip(answers, rows, strict=False):
        mine = owui_figures(usage)
        theirs = {name: row[name] for name in FIGURES}
        same = mine == theirs
        matched = matched and same and row["door"] == "openai" and row["api_token"] == "Open WebUI"
        print(f"\n{kind}: answer {len(text)} characters, row {row['request_id']} ({row['status']}, door {row['door']}, "
              f"token '{row['api_token']}', cost {row['cost_estimate']})")
        print(f"  {'figure':<18}{'Open WebUI':>12}{'ChatLima row':>14}")
        for name in FIGURES:
            print(f"  {name:<18}{mine[name]!s:>12}{theirs[name]!s:>14}")
        print(f"  {'cost':<18}{((usage or {}).get('cost') or {}).get('estimated')!s:>12}{row['cost_estimate']!s:>14}")
        print("  the same figures" if same else "  DIFFERENT FIGURES")
    print("\nOK: Open WebUI's usage is ChatLima's usage row" if matched else "\nMISMATCH")
    return 0 if matched else 1


if __name__ == "__main__":
    raise SystemExit(main())
