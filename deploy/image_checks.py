#!/usr/bin/env python3
"""Exercise built notespace images from the inside: lean, CLI, entrypoint, migrate, serve, train.

    python3 deploy/image_checks.py service --image notespace-service:0.1.0 --bundle DIR
    python3 deploy/image_checks.py training --image notespace-training:0.1.0 \
        --service-image notespace-service:0.1.0 --out DIR

deploy/build_images.sh runs it after a build. Not `podman run`: it sets rlimits, which some
sandboxes refuse (this project's CI machine does), and it needs no daemon either way. Each
command runs in a working container of the image (`buildah from`) as uid 10001 with the root
filesystem mounted read-only, tmpfs on /tmp and host folders bind-mounted where
docker-compose.yml puts volumes: what compose's `read_only: true` gives. buildah has no
read-only option, so that root is the container's own, bind-mounted read-only by `unshare` +
`chroot` here; where that is not possible the commands go through `buildah run --isolation
chroot` (writable root) and the report says so. The network is the host's: the database is the
host's PostgreSQL, the service listens on a free loopback port. Standard library only; it never
prints the database password or an API key.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UID = GID = 10001  # the images' USER (deploy/*.Dockerfile, docker-compose.yml)
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Not installed in the service image (architecture.md: the service stays lean).
FORBIDDEN_IN_SERVICE = ["torch", "transformers", "sentence_transformers", "triton"]
# Synthetic notes (no patient data): indexed, searched, and looked for in the server's log.
NOTES = {
    "check-cardiac": "Chest pain radiating to the left arm, troponin raised, ECG ST elevation.",
    "check-ortho": "Fall at home, swollen left wrist, X-ray shows a distal radius fracture.",
    "check-resp": "Productive cough and fever for three days, crackles at the right base.",
}
QUERY = "myocardial infarction with chest pain"


class CheckFailed(Exception):
    """One check did not hold; the message says what was seen (never a secret or a note)."""


@dataclass(frozen=True)
class Mount:
    """A host folder bind-mounted into the container, as a compose volume would be."""

    host: Path
    target: str
    read_only: bool = True


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, body: Callable[[], str]) -> bool:
        start = time.monotonic()
        try:
            detail, ok = body(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        result = Result(name, ok, time.monotonic() - start, detail)
        self.results.append(result)
        print(f"{'PASS' if ok else 'FAIL'}  {name} ({result.seconds:.1f} s): {detail}", flush=True)
        return ok

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def sh(argv: Sequence[str], *, timeout: float = 120, check: bool = True) -> str:
    # S603: this tool exists to run podman/buildah and the image's own commands.
    result = subprocess.run(  # noqa: S603
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise CheckFailed(
            f"{argv[0]} {argv[1]} failed ({result.returncode}): {result.stderr[-500:]}"
        )
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_size_bytes(image: str) -> int:
    return int(sh(["podman", "image", "inspect", "--format", "{{.Size}}", image]).strip())


# -- running commands inside a working container -------------------------------------------


class Container:
    """A working container of an image (`buildah from`), its root filesystem mounted on the host."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.name = f"notespace-check-{os.getpid()}-{secrets.token_hex(3)}"
        self.root = Path()
        self.env: dict[str, str] = {}
        self.workdir = "/"

    def __enter__(self) -> Container:
        sh(["buildah", "from", "--pull=never", "--name", self.name, self.image])
        try:
            self.root = Path(sh(["buildah", "mount", self.name]).strip())
            info = json.loads(sh(["buildah", "inspect", "--type", "container", self.name]))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        config = info.get("OCIv1", {}).get("config", {})
        self.env = dict(item.split("=", 1) for item in config.get("Env") or [])
        self.workdir = config.get("WorkingDir") or "/"
        # Docker sets HOME from the user's passwd entry when the image does not.
        self.env.setdefault("HOME", self._home_of(UID))
        return self

    def __exit__(self, *_: object) -> None:
        for verb in ("umount", "rm"):
            subprocess.run(["buildah", verb, self.name], capture_output=True, check=False)  # noqa: S603, S607

    def _home_of(self, uid: int) -> str:
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 5 and parts[2] == str(uid):
                return parts[5]
        return "/"


class ReadOnlyRunner:
    """The container's root, read-only, in a private mount and PID namespace, as uid 10001."""

    description = "read-only root (unshare + chroot), uid 10001, tmpfs /tmp"
    read_only = True

    def __init__(self, container: Container) -> None:
        self.container = container

    def command(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[Mount],
        tmpfs: Sequence[str],
    ) -> list[str]:
        root = shlex.quote(str(self.container.root))
        q = shlex.quote
        lines = [
            f"R={root}",
            'mount --bind "$R" "$R"',
            'mount -o remount,bind,ro "$R"',
            'mount -t proc proc "$R/proc"',
            'mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/tmp"',
            # A minimal /dev, as a container runtime gives.
            'mount -t tmpfs -o nosuid,mode=755 tmpfs "$R/dev"',
            "for n in null zero full random urandom tty; do"
            ' touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done',
            'mkdir "$R/dev/shm" && mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/dev/shm"',
            'ln -s /proc/self/fd "$R/dev/fd"',
            # /run is where compose mounts secrets (/run/secrets).
            'mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$R/run"',
        ]
        for target in tmpfs:
            options = f"nosuid,nodev,uid={UID},gid={GID},mode=0700"
            lines.append(f'mount -t tmpfs -o {options} tmpfs "$R"{q(target)}')
        for m in mounts:
            target = f'"$R"{q(m.target)}'
            if m.target.startswith("/run/"):
                lines.append(f"mkdir -p {target}")
            lines.append(
                f"[ -e {target} ] || {{ echo 'mount point {m.target} missing in the image' >&2;"
                " exit 125; }"
            )
            lines.append(f"mount --bind {q(str(m.host))} {target}")
            if m.read_only:
                lines.append(f"mount -o remount,bind,ro {target}")
        env_args = " ".join(q(f"{k}={v}") for k, v in env.items())
        run = " ".join(q(a) for a in argv)
        lines.append(
            f'chroot --userspec={UID}:{GID} --groups={GID} "$R" /bin/sh -c \'cd "$0" && exec "$@"\''
            f" {q(self.container.workdir)} /usr/bin/env -i {env_args} {run}"
        )
        script = "set -eu\n" + "\n".join(lines) + "\n"
        return [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ]


class BuildahRunner:
    """`buildah run --isolation chroot` as uid 10001: the root filesystem stays writable."""

    description = "buildah run --isolation chroot, uid 10001 (root filesystem NOT read-only)"
    read_only = False

    def __init__(self, container: Container) -> None:
        self.container = container

    def command(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[Mount],
        tmpfs: Sequence[str],
    ) -> list[str]:
        args = ["buildah", "run", "--isolation", "chroot", "--user", f"{UID}:{GID}"]
        for m in mounts:
            args += ["-v", f"{m.host}:{m.target}{':ro' if m.read_only else ''}"]
        for target in ["/tmp", *tmpfs]:  # noqa: S108 (the container's own /tmp)
            args += ["--mount", f"type=tmpfs,destination={target}"]
        for key, value in env.items():
            if self.container.env.get(key) != value:
                args += ["-e", f"{key}={value}"]
        return [*args, self.container.name, "--", *argv]


Runner = ReadOnlyRunner | BuildahRunner


@dataclass
class Sandbox:
    """Runs commands in one container with the environment and volumes of a compose service."""

    runner: Runner
    mounts: list[Mount] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        full_env = {**self.runner.container.env, **self.env, **(env or {})}
        return self.runner.command(argv, full_env, self.mounts, self.tmpfs)

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            self.argv(argv, env), capture_output=True, text=True, timeout=timeout, check=False
        )

    def entry(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """`python /app/deploy/entrypoint.py ARGS`, as every compose service starts."""
        return self.run(["python", "/app/deploy/entrypoint.py", *args], env, timeout)


READ_ONLY_PROBE = (
    "import os; print('ro' if os.statvfs('/').f_flag & os.ST_RDONLY else 'rw', os.getuid())"
)


def pick_runner(container: Container, report: Report) -> Runner:
    runner: Runner = ReadOnlyRunner(container)
    reason = ""
    if shutil.which("unshare") is None or shutil.which("chroot") is None:
        reason = "unshare/chroot not on this host"
    else:
        probe = Sandbox(runner).run(["python", "-c", READ_ONLY_PROBE], timeout=60)
        if probe.returncode != 0:
            reason = f"mounting the root read-only is refused here: {probe.stderr.strip()[-200:]}"
        elif probe.stdout.split() != ["ro", str(UID)]:
            reason = f"the probe saw {probe.stdout.strip()!r}, not a read-only root as uid {UID}"
    if reason:
        print(f"WARNING: read-only root NOT checked ({reason}); using buildah run", flush=True)
        runner = BuildahRunner(container)
    report.facts["runner"] = runner.description
    return runner


def expect(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise CheckFailed(
            f"{what}: exit {result.returncode}: {(result.stderr or result.stdout)[-800:]}"
        )
    return result.stdout


# -- descendant processes (to stop exactly the server this script started) ------------------


def children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


# -- HTTP ----------------------------------------------------------------------------------


def http(
    method: str, url: str, body: object = None, key: str | None = None, timeout: float = 60
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# -- the database: a scratch database on the host's PostgreSQL -----------------------------


@dataclass(frozen=True)
class Database:
    admin_url: str
    name: str

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.admin_url)

    def postgres_env(self, password_file: str) -> dict[str, str]:
        """The POSTGRES_* variables compose gives every notespace container (entrypoint.py)."""
        p = self.parts
        return {
            "POSTGRES_USER": p.username or "postgres",
            "POSTGRES_HOST": p.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(p.port or 5432),
            "POSTGRES_DB": self.name,
            "POSTGRES_PASSWORD_FILE": password_file,
        }


ADMIN_SQL = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    if sys.argv[2] == "create":
        conn.execute(f'CREATE DATABASE "{sys.argv[3]}"')
    else:
        conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[3]}" WITH (FORCE)')
"""


@contextlib.contextmanager
def scratch_database(box: Sandbox, admin_url: str) -> Iterator[Database]:
    """Created and dropped with the image's own psycopg, so the host needs no client."""
    db = Database(admin_url, f"notespace_image_check_{os.getpid()}_{secrets.token_hex(3)}")
    expect(box.run(["python", "-c", ADMIN_SQL, admin_url, "create", db.name]), "CREATE DATABASE")
    try:
        yield db
    finally:
        dropped = box.run(["python", "-c", ADMIN_SQL, admin_url, "drop", db.name])
        if dropped.returncode != 0:
            print(f"WARNING: could not drop scratch database {db.name}", file=sys.stderr)


# -- checks ---------------------------------------------------------------------------------

LEAN_PROBE = """
import importlib.metadata as md, importlib.util as u, json, shutil, sys
names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
out = {
    "python": sys.version.split()[0],
    "importable_forbidden": [m for m in sys.argv[1:] if u.find_spec(m) is not None],
    "nvidia_distributions": [n for n in names if n.startswith("nvidia")],
    "pip_in_venv": u.find_spec("pip") is not None,
    "compilers": [c for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)],
    "onnxruntime": next((f"{n} {md.version(n)}" for n in names if n.startswith("onnxruntime")),
                        None),
    "openvino": md.version("openvino") if "openvino" in names else None,
    "distributions": len(names),
}
import onnxruntime
out["providers"] = onnxruntime.get_available_providers()
print(json.dumps(out))
"""


CUDA_LINK_PROBE = """
import json, pathlib, subprocess, onnxruntime
lib = pathlib.Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
print(json.dumps(sorted({l.split()[0] for l in out.splitlines() if "not found" in l})))
"""
# The one CUDA library a GPU image cannot carry: the driver's, mounted by the NVIDIA toolkit.
FROM_THE_DRIVER = {"libcuda.so.1"}


def check_lean(box: Sandbox, image: str, gpu: bool, report: Report) -> str:
    facts = json.loads(
        expect(box.run(["python", "-c", LEAN_PROBE, *FORBIDDEN_IN_SERVICE]), "lean probe")
    )
    size = image_size_bytes(image)
    report.facts["image_size_bytes"] = size
    report.facts["lean"] = facts
    problems = []
    if facts["importable_forbidden"]:
        problems.append(f"importable: {facts['importable_forbidden']}")
    if facts["pip_in_venv"]:
        problems.append("pip left in the runtime venv")
    if facts["compilers"]:
        problems.append(f"compilers: {facts['compilers']}")
    if gpu:
        if not (facts["onnxruntime"] or "").startswith("onnxruntime-gpu"):
            problems.append(f"expected onnxruntime-gpu, found {facts['onnxruntime']}")
        if "CUDAExecutionProvider" not in facts["providers"]:
            problems.append(f"no CUDA provider built in: {facts['providers']}")
        # The CUDA/cuDNN wheels' libraries must resolve through ld.so.conf.d (the Dockerfile).
        unresolved = set(json.loads(expect(box.run(["python", "-c", CUDA_LINK_PROBE]), "ldd")))
        report.facts["cuda_provider_unresolved"] = sorted(unresolved)
        if unresolved - FROM_THE_DRIVER:
            problems.append(f"the CUDA provider's libraries do not resolve: {sorted(unresolved)}")
    elif facts["nvidia_distributions"]:
        problems.append(f"CUDA wheels in the CPU image: {facts['nvidia_distributions']}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return (
        f"no {', '.join(FORBIDDEN_IN_SERVICE)}; python {facts['python']}, {facts['onnxruntime']},"
        f" openvino {facts['openvino']}, {facts['distributions']} distributions;"
        f" image {size / 1e6:.0f} MB"
    )


def check_help(box: Sandbox) -> str:
    out = expect(box.entry("notespace", "--help", env={"NO_COLOR": "1"}), "notespace --help")
    missing = [c for c in ("serve", "db", "models", "keys", "index", "audit") if c not in out]
    if missing:
        raise CheckFailed(f"--help lacks {missing}")
    return "serve, db, models, keys, index, audit listed"


URL_PROBE = """
import hashlib, json, os, sys
from sqlalchemy.engine import make_url
url = make_url(os.environ["NOTESPACE_DATABASE_URL"])
print(json.dumps({
    "driver": url.drivername, "user": url.username, "host": url.host, "port": url.port,
    "database": url.database,
    "password_sha256": hashlib.sha256((url.password or "").encode()).hexdigest(),
    "plain_password_left": "POSTGRES_PASSWORD" in os.environ,
}))
"""


def check_entrypoint(runner: Runner, secrets_dir: Path) -> str:
    """The password secret as compose mounts it: readable by group 10001, or not at all."""
    password = "p@ss:w/rd%?#" + secrets.token_urlsafe(16)
    good = secrets_dir / "good"
    good.mkdir()
    (good / "db_password").write_text(password + "\n")
    os.chown(good / "db_password", 0, GID)
    os.chmod(good / "db_password", 0o440)  # RUNBOOK.md: root:10001, 0440
    locked = secrets_dir / "locked"
    locked.mkdir()
    (locked / "db_password").write_text("x" * 32)
    os.chmod(locked / "db_password", 0o400)  # root only: the usual mistake
    env = {"POSTGRES_USER": "ops", "POSTGRES_HOST": "db", "POSTGRES_DB": "ns"}

    box = Sandbox(runner, mounts=[Mount(good, "/run/secrets")])
    seen = json.loads(
        expect(
            box.entry(
                "python",
                "-c",
                URL_PROBE,
                env={**env, "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"},
            ),
            "entrypoint with a readable secret",
        )
    )
    wanted = {
        "driver": "postgresql+psycopg",
        "user": "ops",
        "host": "db",
        "port": 5432,
        "database": "ns",
        "password_sha256": hashlib.sha256(password.encode()).hexdigest(),
        "plain_password_left": False,
    }
    if seen != wanted:
        raise CheckFailed(
            f"URL from the secret: { ({k: v for k, v in seen.items() if wanted[k] != v}) }"
        )

    box = Sandbox(runner, mounts=[Mount(locked, "/run/secrets")])
    refused = box.entry("true", env={**env, "POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"})
    if refused.returncode != 2 or "cannot read POSTGRES_PASSWORD_FILE" not in refused.stderr:
        raise CheckFailed(
            f"unreadable secret: exit {refused.returncode}, {refused.stderr[-300:]!r}"
        )

    short = "tiny-secret"
    box = Sandbox(runner)
    too_short = box.entry("true", env={**env, "POSTGRES_PASSWORD": short})
    if too_short.returncode != 2 or "shorter than 12" not in too_short.stderr:
        raise CheckFailed(f"short password: exit {too_short.returncode}")
    if short in too_short.stderr + too_short.stdout:
        raise CheckFailed("the entrypoint echoed the password")
    plain = json.loads(
        expect(
            box.entry("python", "-c", URL_PROBE, env={**env, "POSTGRES_PASSWORD": password}),
            "entrypoint with POSTGRES_PASSWORD",
        )
    )
    if plain["plain_password_left"]:
        raise CheckFailed("POSTGRES_PASSWORD stays in the command's environment")
    return (
        "secret 0440 root:10001 -> URL (quoted, exact); 0400 root -> exit 2 'cannot read';"
        " short -> exit 2, not echoed; POSTGRES_PASSWORD removed from the environment"
    )


@dataclass
class Service:
    """A database, secret and volumes as compose gives the `service` container."""

    db: Database
    box: Sandbox
    index_dir: Path
    image: str
    api_key: str = ""


def check_migrate(service: Service) -> str:
    out = expect(service.box.entry("notespace", "db", "upgrade"), "notespace db upgrade")
    current = expect(service.box.entry("notespace", "db", "current"), "notespace db current")
    revisions = [line.split()[-1] for line in current.splitlines() if line.strip()]
    if len(revisions) != 2 or revisions[0] != revisions[1] or revisions[0] == "(empty)":
        raise CheckFailed(f"db current after upgrade: {current!r}")
    return f"{out.strip().splitlines()[-1]}; database and code at {revisions[0]}"


def check_keys(service: Service) -> str:
    out = expect(
        service.box.entry(
            "notespace", "keys", "create", "--name", "image-check", "--scopes", "embed,search,index"
        ),
        "notespace keys create",
    )
    key = out.strip().splitlines()[-1].strip() if out.strip() else ""
    if not key.startswith("ns_"):
        raise CheckFailed("keys create printed no key on stdout")
    service.api_key = key
    return "an embed,search,index key created with the CLI (printed once, not shown here)"


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the server process itself (what `docker stop` sends), then wait."""
        targets = [
            p
            for p in descendants(self.process.pid)
            if any(part.endswith("notespace") for part in cmdline(p)[:2])
        ]
        for pid in targets[-1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # unshare --kill-child / buildah take the container with them
            self.process.wait(30)
            raise CheckFailed(
                f"the server did not stop within {timeout:.0f} s of SIGTERM"
            ) from None


@contextlib.contextmanager
def serving(
    service: Service, bundle_name: str, log_dir: Path, ready_timeout: float = 240
) -> Iterator[Server]:
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    env = {
        # Loopback: the host network is shared here; the image's 0.0.0.0 would listen on every
        # interface of this machine. NOTESPACE_AUTH=on keeps what 0.0.0.0 implies: keys required.
        "NOTESPACE_HOST": "127.0.0.1",
        "NOTESPACE_PORT": str(port),
        "NOTESPACE_AUTH": "on",
        "NOTESPACE_BUNDLE_PATH": f"/bundles/{bundle_name}",
        "NOTESPACE_INTRA_OP_THREADS": os.environ.get("NOTESPACE_CHECK_THREADS", "1"),
    }
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603
            service.box.argv(["python", "/app/deploy/entrypoint.py", "notespace", "serve"], env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise CheckFailed(f"serve exited {process.returncode}: {log.read_text()[-1500:]}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if http("GET", f"{server.base}/ready", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise CheckFailed(
                    f"not ready after {ready_timeout:.0f} s: {log.read_text()[-1500:]}"
                )
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            with contextlib.suppress(CheckFailed):
                server.stop()


def run_healthcheck(server: Server, service: Service) -> str:
    """The image's own HEALTHCHECK command, run inside it (on this run's port, not 8000)."""
    spec = json.loads(
        sh(["podman", "image", "inspect", "--format", "{{json .HealthCheck}}", service.image])
    )
    test = (spec or {}).get("Test") or []
    if not test or test[0] != "CMD":
        raise CheckFailed(f"the image has no HEALTHCHECK CMD (built as OCI?): {spec}")
    argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}") for a in test[1:]]
    expect(service.box.run(argv, timeout=30), "the image's HEALTHCHECK")
    return "HEALTHCHECK passes"


def check_http(server: Server, service: Service, report: Report) -> str:
    base, key = server.base, service.api_key
    if http("GET", f"{base}/health")[0] != 200:
        raise CheckFailed("/health is not 200")
    healthcheck = run_healthcheck(server, service)
    status, _ = http("POST", f"{base}/embed", {"notes": ["no key"]})
    if status != 401:
        raise CheckFailed(f"/embed without a key: {status}, expected 401")
    status, body = http("POST", f"{base}/embed", {"notes": [NOTES["check-cardiac"]]}, key)
    if status != 200:
        raise CheckFailed(f"/embed: {status} {body}")
    vector = body["data"][0]["embedding"]
    norm = sum(v * v for v in vector) ** 0.5
    if len(vector) != body["dim"] or abs(norm - 1) > 1e-3:
        raise CheckFailed(f"/embed: {len(vector)} values, dim {body['dim']}, norm {norm:.4f}")
    status, body = http(
        "POST", f"{base}/notes", {"notes": [{"id": k, "text": v} for k, v in NOTES.items()]}, key
    )
    if status != 200 or [r["status"] for r in body["results"]] != ["created"] * len(NOTES):
        raise CheckFailed(f"/notes: {status} {body}")
    status, body = http("POST", f"{base}/search", {"query": QUERY, "k": len(NOTES)}, key)
    if status != 200:
        raise CheckFailed(f"/search: {status} {body}")
    hits = [(r["id"], r["score"]) for r in body["results"]]
    if sorted(h[0] for h in hits) != sorted(NOTES) or [s for _, s in hits] != sorted(
        (s for _, s in hits), reverse=True
    ):
        raise CheckFailed(f"/search returned {hits}")
    status, info = http("GET", f"{base}/info", key=key)
    if status != 200:
        raise CheckFailed(f"/info: {status}")
    model = info.get("model") or {}
    if info.get("auth") != "on":
        raise CheckFailed(f"/info says auth {info.get('auth')!r}")
    served = f"{model.get('name')}@{model.get('version')}"
    report.facts["serving"] = {"model": served, "providers": model.get("providers")}
    return (
        f"/health /ready 200; /embed 401 without key; /embed dim {len(vector)} unit norm;"
        f" /notes 3 created; /search {len(hits)} hits, top {hits[0][0]}; {healthcheck};"
        f" {served} on {', '.join(model.get('providers') or [])}"
    )


def check_stopped(server: Server, service: Service) -> str:
    code = server.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    if code not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        raise CheckFailed(f"serve exited {code} after SIGTERM: {server.log.read_text()[-800:]}")
    snapshot = [p for p in service.index_dir.rglob("*") if p.is_file()]
    if not snapshot or any(p.stat().st_uid != UID for p in snapshot):
        raise CheckFailed(f"no index snapshot written by uid {UID} in the index volume")
    log = server.log.read_text()
    leaked = [k for k, text in NOTES.items() if text in log] + (["query"] if QUERY in log else [])
    if leaked:
        raise CheckFailed(f"note or query text in the server log: {leaked}")
    return (
        f"SIGTERM -> exit {code}; index snapshot ({len(snapshot)} files, uid {UID}) in the"
        " volume; no note or query text in the log"
    )


def service_checks(args: argparse.Namespace, report: Report) -> None:
    bundle = Path(args.bundle).resolve()
    if not (bundle / "manifest.json").is_file():
        raise SystemExit(f"{bundle}: not a model bundle (no manifest.json)")
    with tempfile.TemporaryDirectory(prefix="notespace-check-") as tmp, Container(args.image) as c:
        work = Path(tmp)
        os.chmod(work, 0o755)  # noqa: S103 (uid 10001 must enter)
        runner = pick_runner(c, report)
        box = Sandbox(runner)
        report.check("lean image", lambda: check_lean(box, args.image, args.gpu, report))
        report.check("notespace --help", lambda: check_help(box))
        report.check("entrypoint password handling", lambda: check_entrypoint(runner, work))
        # The GPU image on this CPU: onnxruntime-gpu's own session (its CPU provider) serves,
        # not OpenVINO, so that the package the image exists for is what is exercised.
        env = {"NOTESPACE_DEVICE": "cpu", "NOTESPACE_RUNTIME": "onnxruntime"} if args.gpu else {}
        serve_checks(runner, work, bundle, args.admin_url, report, env=env)


def serve_checks(
    runner: Runner,
    work: Path,
    bundle: Path,
    admin_url: str,
    report: Report,
    prefix: str = "",
    env: Mapping[str, str] | None = None,
) -> None:
    """Migrate, create a key, serve BUNDLE, embed, index, search, stop: the compose service."""
    secret_dir = work / "serve-secrets"
    index_dir = work / "serve-index"
    secret_dir.mkdir()
    index_dir.mkdir()
    (secret_dir / "db_password").write_text("trust-auth-ignores-it\n")  # the host uses trust
    os.chown(secret_dir / "db_password", 0, GID)
    os.chmod(secret_dir / "db_password", 0o440)
    os.chown(index_dir, UID, GID)  # the `index` volume
    with scratch_database(Sandbox(runner), admin_url) as db:
        box = Sandbox(
            runner,
            mounts=[
                Mount(bundle.parent, "/bundles"),
                Mount(index_dir, "/var/lib/notespace/index", read_only=False),
                Mount(secret_dir, "/run/secrets"),
            ],
            env={**db.postgres_env("/run/secrets/db_password"), **(env or {})},
        )
        service = Service(db, box, index_dir, runner.container.image)
        if not report.check(
            f"{prefix}notespace db upgrade (host PostgreSQL)", lambda: check_migrate(service)
        ):
            return
        if not report.check(f"{prefix}notespace keys create", lambda: check_keys(service)):
            return
        with contextlib.ExitStack() as stack:
            started: list[Server] = []

            def start_server() -> str:
                start = time.monotonic()
                started.append(stack.enter_context(serving(service, bundle.name, work)))
                return f"ready in {time.monotonic() - start:.1f} s on port {started[0].port}"

            if not report.check(f"{prefix}notespace serve ({bundle.name}) -> /ready", start_server):
                return
            server = started[0]
            report.check(
                f"{prefix}/embed, /notes, /search", lambda: check_http(server, service, report)
            )
            report.check(f"{prefix}graceful stop", lambda: check_stopped(server, service))


# -- the training image ---------------------------------------------------------------------

TORCH_PROBE = """
import importlib.metadata as md, json, torch, transformers
names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                  "transformers": transformers.__version__,
                  "nvidia_distributions": [n for n in names if n.startswith("nvidia")]}))
"""


def training_checks(args: argparse.Namespace, report: Report) -> None:
    out = Path(args.out).resolve()
    runs, bundles = out / "runs", out / "bundles"
    for folder in (out, runs, bundles):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, UID, GID)  # compose: ./runs and ./bundles, owned by uid 10001
    config = args.config
    with Container(args.image) as c:
        runner = pick_runner(c, report)
        box = Sandbox(
            runner,
            mounts=[
                Mount(runs, "/work/runs", read_only=False),
                Mount(bundles, "/bundles", read_only=False),
            ],
            tmpfs=["/home/notespace"],  # docker-compose.yml: train's tmpfs
            env={"NO_COLOR": "1"},
        )

        def torch_cpu() -> str:
            facts = json.loads(expect(box.run(["python", "-c", TORCH_PROBE]), "torch probe"))
            size = image_size_bytes(args.image)
            report.facts.update(training_image_size_bytes=size, training=facts)
            if facts["cuda"] is not None or facts["nvidia_distributions"]:
                raise CheckFailed(f"a CUDA build of torch: {facts}")
            return (
                f"torch {facts['torch']} (no CUDA), transformers {facts['transformers']};"
                f" image {size / 1e6:.0f} MB"
            )

        def train() -> str:
            start = time.monotonic()
            result = box.entry(
                "notespace",
                "train",
                "mlm",
                "--config",
                config,
                "--no-progress",
                timeout=args.train_timeout,
            )
            expect(result, f"notespace train mlm --config {config}")
            report.facts["train_seconds"] = round(time.monotonic() - start, 1)
            run_dir = next(iter(sorted(runs.iterdir())), None)
            if run_dir is None or not (run_dir / "final" / "lineage.json").is_file():
                raise CheckFailed("no runs/NAME/final/lineage.json after training")
            report.facts["run"] = run_dir.name
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
            steps = max((int(m.get("step", 0)) for m in metrics), default=0)
            report.facts["train_steps"] = steps
            return f"runs/{run_dir.name}: {steps} steps in {report.facts['train_seconds']} s"

        def export() -> str:
            start = time.monotonic()
            name = report.facts["run"]
            result = box.entry(
                "notespace",
                "export",
                "--base",
                f"runs/{name}/final",
                "--out",
                f"/bundles/{name}",
                "--name",
                name,
                "--version",
                "1",
                timeout=args.train_timeout,
            )
            expect(result, "notespace export")
            report.facts["export_seconds"] = round(time.monotonic() - start, 1)
            manifest = json.loads((bundles / name / "manifest.json").read_text())
            parity = manifest.get("parity") or {}
            return (
                f"/bundles/{name}: {manifest['name']}@{manifest['version']}"
                f" ({manifest['objective']}), dim {manifest['embedding_dim']}, parity min cosine"
                f" {parity.get('min_cosine')}, in {report.facts['export_seconds']} s"
            )

        def export_default() -> str:
            # RUNBOOK.md section 2: the first bundle, from the encoder the image ships.
            start = time.monotonic()
            expect(
                box.entry("notespace", "export", "--out", "/bundles/all-MiniLM-L6-v2"),
                "notespace export --out /bundles/all-MiniLM-L6-v2",
            )
            manifest = json.loads((bundles / "all-MiniLM-L6-v2" / "manifest.json").read_text())
            return (
                f"{manifest['name']}@{manifest['version']} from the packaged encoder, offline,"
                f" in {time.monotonic() - start:.1f} s"
            )

        ok = report.check("training image: torch CPU build", torch_cpu)
        report.check("notespace export (the default encoder, RUNBOOK section 2)", export_default)
        ok = ok and report.check(f"notespace train mlm --config {config}", train)
        ok = ok and report.check("notespace export (the trained run)", export)
    if ok and args.service_image:
        # The exported bundle, served by the service image: what a trust's promotion relies on.
        with (
            tempfile.TemporaryDirectory(prefix="notespace-check-") as tmp,
            Container(args.service_image) as c,
        ):
            work = Path(tmp)
            os.chmod(work, 0o755)  # noqa: S103 (uid 10001 must enter)
            serve_checks(
                pick_runner(c, report),
                work,
                bundles / report.facts["run"],
                args.admin_url,
                report,
                prefix="trained bundle: ",
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    service = sub.add_parser("service", help="check a service image (CPU or --gpu)")
    service.add_argument("--image", required=True)
    service.add_argument("--bundle", required=True, help="a model bundle folder on this host")
    service.add_argument("--gpu", action="store_true", help="the image carries onnxruntime-gpu")
    training = sub.add_parser("training", help="train and export in the training image")
    training.add_argument("--image", required=True)
    training.add_argument("--out", required=True, help="host folder for runs/ and bundles/")
    training.add_argument("--config", default="/app/training/configs/quickstart.yaml")
    training.add_argument("--train-timeout", type=float, default=1800)
    training.add_argument("--service-image", help="also serve the exported bundle in this image")
    for p in (service, training):
        p.add_argument(
            "--admin-url", default=os.environ.get("NOTESPACE_CHECK_POSTGRES_URL", DEFAULT_ADMIN_URL)
        )
        p.add_argument("--report", help="write the results and figures here (JSON)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: buildah mounts the image's root filesystem")
    report = Report()
    start = time.monotonic()
    (service_checks if args.what == "service" else training_checks)(args, report)
    report.facts["total_seconds"] = round(time.monotonic() - start, 1)
    failed = [r.name for r in report.results if not r.ok]
    print(
        f"{len(report.results) - len(failed)} passed, {len(failed)} failed"
        f" ({args.what} image checks, {report.facts['total_seconds']} s,"
        f" {report.facts.get('runner')})",
        flush=True,
    )
    if args.report:
        Path(args.report).write_text(
            json.dumps(
                {"results": [r.__dict__ for r in report.results], "facts": report.facts}, indent=2
            )
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
