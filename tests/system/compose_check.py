"""``docker compose up`` for real, on a host without a GPU: the venue stack built and run in containers.

    python -m tests.system.compose_check [--work DIR] [--no-cache] [--keep] [--demo-cer X]
                                         [--python-image IMAGE --redis-image IMAGE]

1. the reference: the concert sample through ``wsp demo`` on this host (its CER), unless ``--demo-cer``;
2. the base images made here (``docker/base-images.sh``: Debian bookworm by debootstrap, ``docker import``),
   unless ``--python-image`` and ``--redis-image`` name images this host has or can pull;
3. the project as a fresh clone has it copied to ``WORK/context``, a wheelhouse made beside it
   (``docker/wheelhouse.sh``), the images built from it (``compose build``: nothing downloaded);
4. ``compose up`` with ``compose.cpu.yaml`` (CPU workers, the bundled model) on free loopback ports, and a
   wait for every healthcheck;
5. the concert sample streamed in real time into a session through the published ingest port, read by two
   displays through the published publisher port: both get the same finals, seqs without gaps, the end,
   and a CER within :data:`CER_MARGIN` of the reference;
6. a second worker (``--scale asr-worker-cpu=2``), the sample again, and the container of the worker that
   holds the session SIGKILLed mid-stream: captions resume within :data:`RESUME_TARGET_S`, nothing lost
   (seqs without gaps, the same finals at both displays, the CER still within the margin);
7. ``compose down -v`` (``--keep`` leaves the stack up).

Progress goes to stderr; the figures, one JSON object, to stdout and ``WORK/compose-check.json``. Exit 0
when every promise held, 1 when one did not, 2 when this host cannot run the check (no Docker engine or
Compose, not root for debootstrap).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.audio import float_to_pcm16, load_audio
from common.contract import keys
from tests.system.compose_stack import ComposeStack, NoDocker, StackError, run
from tests.system.session_run import SessionRun, stream_session
from wsp.bench.failover import RESUME_TARGET_S
from wsp.bench.processes import free_port
from wsp.bench.scoring import error_rate
from wsp.commands import bundled_sample

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "wsp-check"
DEFAULT_WORK = Path("/var/tmp/wsp-compose-check")
LOCAL_PYTHON_IMAGE = "wsp-base/python:3.11-bookworm"
LOCAL_REDIS_IMAGE = "wsp-base/redis:7-bookworm"
IMAGES = ("wsp-ingest:latest", "wsp-publisher:latest", "wsp-worker-cpu:latest")
CER_MARGIN = 0.03
"""A session through the containers may be this much worse than the same sample through ``wsp demo``."""
HEALTHY_TIMEOUT_S = 300.0
KILL_AFTER_FINALS = 5
"""The owner of the second session is killed once a display has shown this many finals."""
TAKEOVER_TIMEOUT_S = 30.0
TAKEOVER_POLL_S = 0.1
DEMO_FIGURES = re.compile(r"^ja: .*error_rate (?P<cer>[0-9.]+)", re.MULTILINE)


def say(message: str) -> None:
    print(f"compose-check: {message}", file=sys.stderr, flush=True)


def demo_cer(work: Path) -> float:
    """The concert sample's CER through ``wsp demo`` on this host (its own ports and Redis data)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSP_")}
    env |= {
        "WSP_INGEST_PORT": str(free_port()),
        "WSP_PUBLISHER_PORT": str(free_port()),
        "WSP_REDIS_DATA_DIR": str(work / "demo-redis"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "wsp", "demo"], env=env, capture_output=True, text=True, timeout=600
    )
    found = DEMO_FIGURES.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise StackError(f"wsp demo failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return float(found["cer"])


def copy_project(context: Path) -> None:
    """The project's files as a clone has them (tracked and new, not ignored) into ``context``; the
    wheelhouse already there is kept."""
    for entry in context.glob("*") if context.exists() else []:
        if entry.name != "wheelhouse":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    listed = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name)


def images_exist(*images: str) -> bool:
    return all(
        subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode == 0 for i in images
    )


def timed(figures: dict[str, Any], name: str, began: float) -> None:
    figures[name] = round(time.monotonic() - began, 1)
    say(f"{name.removesuffix('_s').replace('_', ' ')}: {figures[name]} s")


def session_checks(
    run_: SessionRun, reference: str, limit: float, what: str
) -> tuple[dict[str, Any], list[str]]:
    """Figures of one session and the promises it broke."""
    cer = error_rate(reference, run_.text(0), "ja")
    figures: dict[str, Any] = {
        "finals": len(run_.finals(0)),
        "cer": round(cer, 4),
        "skipped_s": run_.skipped_s(),
    }
    broken = []
    if not run_.finals(0):
        broken.append(f"{what}: no final caption")
    if any(run_.seqs(i) != list(range(1, len(run_.seqs(i)) + 1)) for i in range(len(run_.displays))):
        broken.append(f"{what}: the seqs have gaps or repeats: {run_.seqs(0)}")
    if any(run_.finals(i) != run_.finals(0) for i in range(len(run_.displays))):
        broken.append(f"{what}: the displays got different finals")
    if not run_.ended():
        broken.append(f"{what}: a display never got the end of the session")
    if cer > limit:
        broken.append(f"{what}: CER {cer:.4f} is above {limit:.4f}")
    return figures, broken


def owner_killer(stack: ComposeStack, figures: dict[str, Any]) -> Callable[[str], tuple[str, float, float]]:
    """What :func:`stream_session` runs once enough finals came: SIGKILL the container of the worker that
    holds the session, then wait for another worker to hold it (``figures``: the container, the time)."""

    def kill(sid: str) -> tuple[str, float, float]:
        holder = stack.redis_get(keys.lease(sid))
        if holder is None:
            raise StackError(f"no worker holds session {sid}")
        container = stack.worker_container(holder)
        at, wall = time.monotonic(), time.time()
        stack.kill(container)
        figures["killed"] = container.id[:12]
        while stack.redis_get(keys.lease(sid)) in (None, holder):
            if time.monotonic() - at > TAKEOVER_TIMEOUT_S:
                raise StackError(f"no worker took session {sid} over in {TAKEOVER_TIMEOUT_S:.0f} s")
            time.sleep(TAKEOVER_POLL_S)
        figures["taken_over_s"] = round(time.monotonic() - at, 2)
        return holder, at, wall

    return kill


def check(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"compose": None, "load_average": [round(os.getloadavg()[0], 1)]}
    broken: list[str] = []
    sample = bundled_sample()
    reference = sample.with_suffix(".txt").read_text(encoding="utf-8")
    pcm = float_to_pcm16(load_audio(sample))

    if args.demo_cer is None:
        say("the reference: the concert sample through `wsp demo` on this host")
        args.demo_cer = demo_cer(work)
        say(f"wsp demo: CER {args.demo_cer}")
    figures["demo_cer"] = args.demo_cer
    limit = args.demo_cer + CER_MARGIN

    began = time.monotonic()
    if args.python_image is None and not images_exist(LOCAL_PYTHON_IMAGE, LOCAL_REDIS_IMAGE):
        if os.geteuid() != 0:
            raise NoDocker(
                "making the base images needs root (debootstrap): run it with sudo, or name "
                "images with --python-image and --redis-image"
            )
        say("base images: docker/base-images.sh (debootstrap of Debian bookworm, docker import)")
        run(["bash", str(ROOT / "docker" / "base-images.sh"), "--work", str(work / "base")])
    if args.python_image is None:
        args.python_image, args.redis_image = LOCAL_PYTHON_IMAGE, LOCAL_REDIS_IMAGE
    timed(figures, "base_images_s", began)

    context = work / "context"
    context.mkdir(exist_ok=True)
    copy_project(context)
    began = time.monotonic()
    say(f"wheelhouse: docker/wheelhouse.sh in {context}")
    run(["bash", "docker/wheelhouse.sh"], cwd=context, env={"PYTHON": sys.executable})
    timed(figures, "wheelhouse_s", began)

    ingest_port, publisher_port = free_port(), free_port()
    stack = ComposeStack(
        context,
        PROJECT,
        env={
            "PYTHON_IMAGE": args.python_image,
            "REDIS_IMAGE": args.redis_image,
            "INGEST_PORT": str(ingest_port),
            "PUBLISHER_PORT": str(publisher_port),
            "WSP_PUBLIC_URL": f"http://127.0.0.1:{publisher_port}",
        },
    )
    figures["compose"] = " ".join(stack.command)
    stack.down()  # what an earlier run left
    began = time.monotonic()
    say(f"build: {figures['compose']} build{' --no-cache' if args.no_cache else ''} (from the wheelhouse)")
    stack.build(no_cache=args.no_cache)
    timed(figures, "build_s", began)
    sizes = stack.image_sizes([*IMAGES, args.python_image, args.redis_image])
    figures["image_mb"] = {image: round(size / 1e6) for image, size in sizes.items()}
    say(f"image sizes (MB): {figures['image_mb']}")

    try:
        up_at = time.monotonic()
        say(f"up: ingest on :{ingest_port}, publisher on :{publisher_port}, one CPU worker")
        stack.up(workers=1)
        stack.wait_healthy(1, HEALTHY_TIMEOUT_S)
        figures["up_to_healthy_s"] = round(time.monotonic() - up_at, 1)
        say(f"every healthcheck passed {figures['up_to_healthy_s']} s after up")

        ingest = f"http://127.0.0.1:{ingest_port}"
        first = asyncio.run(stream_session(ingest, pcm))
        figures["up_to_first_caption_s"] = round(first.first_event_at - up_at, 1)
        figures["up_to_first_final_s"] = round(first.first_final_at - up_at, 1)
        figures["audio_to_first_caption_s"] = round(first.first_event_at - first.began, 1)
        figures["session"], problems = session_checks(first, reference, limit, "session")
        broken += problems
        say(f"session: {figures['session']}, first caption {figures['up_to_first_caption_s']} s after up")

        began = time.monotonic()
        stack.up(workers=2)
        stack.wait_healthy(2, HEALTHY_TIMEOUT_S)
        timed(figures, "scale_to_two_s", began)

        killing: dict[str, Any] = {}
        second = asyncio.run(stream_session(ingest, pcm, KILL_AFTER_FINALS, owner_killer(stack, killing)))
        failover, problems = session_checks(second, reference, limit, "failover")
        failover |= killing
        failover["resume_s"] = second.resume_s()
        failover["resume_final_s"] = second.resume_s(finals_only=True)
        broken += problems
        if failover["resume_s"] is None or failover["resume_s"] > RESUME_TARGET_S:
            broken.append(
                f"failover: captions resumed after {failover['resume_s']} s, not within {RESUME_TARGET_S} s"
            )
        figures["failover"] = failover
        say(f"failover: {failover}")
    except StackError as exc:
        broken.append(str(exc))
    finally:
        figures["load_average"].append(round(os.getloadavg()[0], 1))
        stack.save_logs(work / "logs")
        if args.keep:
            say(f"--keep: the stack runs on (`{figures['compose']} -p {PROJECT} down -v` in {context})")
        else:
            stack.down()
    return figures, broken


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compose_check", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help=f"base images, context, wheelhouse (default {DEFAULT_WORK})",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="build every layer again (the build time of a fresh host)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--demo-cer", type=float, help="the reference CER, instead of running `wsp demo`")
    parser.add_argument(
        "--python-image", help="base image of ingest, publisher and workers (default: made here)"
    )
    parser.add_argument("--redis-image", help="Redis 7 image (default: made here)")
    args = parser.parse_args(argv)
    if (args.python_image is None) != (args.redis_image is None):
        parser.error("--python-image and --redis-image go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        figures, broken = check(args)
    except NoDocker as exc:
        print(f"compose-check: error: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        figures, broken = {}, [str(exc)]
    figures["broken"] = broken
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    (args.work / "compose-check.json").write_text(text + "\n", encoding="utf-8")
    say("every promise held" if not broken else f"{len(broken)} promise(s) broken:\n  " + "\n  ".join(broken))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
