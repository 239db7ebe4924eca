"""The bulk copy's memory and speed as the number of sessions grows.

For each size, a fresh Django project holds that many signed-in sessions in Django's db
engine (an SQLite file); `python -m django cloudsessions migrate` copies them into the
store in a child process, whose peak RSS the kernel reports (wait4's ru_maxrss). Memory
must stay flat in the number of sessions: the copy holds one batch at a time. The baseline
is the same command on an empty table (Django, the store's client and the command itself).
Prints a table, saves benchmarks/results/migrate.{md,png}.

    python -m benchmarks.migrate [--sizes 10000,100000] [--store sqlite:///...] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.harness import RESULTS, publish, save_figure

ENGINE = "django.contrib.sessions.backends.db"


def project(folder: Path, store: str | None) -> dict[str, str]:
    """A Django project in `folder` whose sessions move from the db engine to `store`."""
    target = store or f"sqlite:///{folder / 'new.sqlite3'}"
    (folder / "site_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "benchmark-not-secret"
            USE_TZ = True
            INSTALLED_APPS = ["django.contrib.sessions", "cloudsessions.django"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                      "NAME": {str(folder / "old.sqlite3")!r}}}}}
            SESSION_ENGINE = "cloudsessions.django"
            CLOUDSESSIONS = {{"STORE": {target!r}, "MIGRATE_FROM": {ENGINE!r}}}
            """
        )
    )
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "site_settings", "PYTHONPATH": str(folder)}


def seed(env: dict[str, str], count: int) -> None:
    script = textwrap.dedent(
        f"""
        import django
        django.setup()
        from datetime import timedelta
        from django.core.management import call_command
        from django.utils import timezone
        from django.contrib.sessions.backends.db import SessionStore
        from django.contrib.sessions.models import Session
        call_command("migrate", verbosity=0)
        call_command("cloudsessions", "init", verbosity=0, stdout=open("/dev/null", "w"))
        expires = timezone.now() + timedelta(days=1)
        encode = SessionStore().encode
        batch = []
        for n in range({count}):
            data = {{"_auth_user_id": str(n % 5000), "cart": ["apple"] * (n % 4), "n": n}}
            batch.append(Session(session_key=f"{{n:032d}}", session_data=encode(data),
                                 expire_date=expires))
            if len(batch) == 5000:
                Session.objects.bulk_create(batch)
                batch = []
        Session.objects.bulk_create(batch)
        """
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=1800)


def copy(folder: Path, env: dict[str, str], batch_size: int) -> tuple[float, float, str]:
    """Seconds, the child's peak RSS in MB, and its last line (the count check)."""
    command = [sys.executable, "-m", "django", "cloudsessions", "migrate"]
    command += ["--batch-size", str(batch_size)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"migrate failed:\n{out}")
    return seconds, usage.ru_maxrss / 1024, out.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--store", help="the target store URL (default: a fresh SQLite file)")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    measured: list[tuple[int, float, float]] = []
    rows = []
    for count in [0, *sizes]:
        with tempfile.TemporaryDirectory(prefix="cloudsessions-migrate-") as scratch:
            folder = Path(scratch)
            env = project(folder, args.store)
            seed(env, count)
            seconds, peak, check = copy(folder, env, args.batch_size)
        measured.append((count, seconds, peak))
        rate = f"{count / seconds:,.0f}" if count else "-"
        rows.append(f"| {count:,} | {seconds:.1f} | {rate} | {peak:.1f} | {check} |")
        print(f"{count:>7} sessions: {seconds:6.1f} s, peak RSS {peak:.1f} MB  ({check})")
    baseline = measured[0][2]
    growth = measured[-1][2] - measured[1][2]
    note = (
        f"`python -m benchmarks.migrate --sizes {args.sizes} --batch-size {args.batch_size}`"
        f" (to {args.store or 'SQLite'}): peak RSS of the copying process; baseline (empty"
        f" table) {baseline:.1f} MB; from {sizes[0]:,} to {sizes[-1]:,} sessions it grows by"
        f" {growth:+.1f} MB."
    )
    print()
    publish(
        "migrate",
        ["sessions", "seconds", "sessions/s", "peak RSS (MB)", "count check"],
        "|---:|---:|---:|---:|---|",
        rows,
        note,
    )
    print(note)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, speed) = plt.subplots(1, 2, figsize=(9, 3.5))
    counts = [m[0] for m in measured[1:]]
    memory.plot(counts, [m[2] for m in measured[1:]], marker="o", label="peak RSS")
    memory.axhline(baseline, color="grey", linestyle="--", label="empty table")
    memory.set_xlabel("sessions copied")
    memory.set_ylabel("MB")
    memory.set_ylim(bottom=0)
    memory.legend()
    speed.bar(
        [f"{c:,}" for c in counts], [c / m[1] for c, m in zip(counts, measured[1:], strict=True)]
    )
    speed.set_ylabel("sessions per second")
    save_figure(fig, RESULTS / "migrate.png", "cloudsessions migrate: memory stays flat")


if __name__ == "__main__":
    main()
