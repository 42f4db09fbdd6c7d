"""A real single-node Slurm cluster on this machine, for tests (recipe: docs of slurm-local).

``SlurmCluster`` installs the Debian packages if they are missing, writes a private
``slurm.conf`` under a state folder, links ``/etc/slurm/slurm.conf`` to it (the Slurm job step
plugin strips ``SLURM_CONF`` before its nested ``srun``, so the default path must work), starts
munged, slurmctld and slurmd in the foreground (backgrounded, PIDs kept) and stops them by PID in
reverse order. It never touches an ``/etc/slurm/slurm.conf`` that is not its own link.

Every failure raises :class:`SlurmUnavailable` with the reason; callers fail on it (never skip).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "srun", "munged")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
#: Part of every state folder's name, so a stale link of ours can be told from a site's config.
MARKER = "calql-slurm-test"


class SlurmUnavailable(RuntimeError):
    """The test cluster could not be installed or started; the message says why."""


def _run(cmd: list[str], timeout: float = 60, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False, **kwargs
    )
    if check and result.returncode != 0:
        raise SlurmUnavailable(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stdout[-2000:]}")
    return result


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/sbin") if (p := Path(d) / name).exists()), None
    )


def ensure_installed(timeout: float = 600) -> None:
    """apt-get install the Slurm and munge packages unless every binary is already there."""
    if all(_which(b) for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("Slurm is not installed and installing it needs root (apt-get)")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("Slurm is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", " ".join(PACKAGES))
    _run(["apt-get", "update"], timeout=timeout, env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=timeout, env=env)
    missing = [b for b in BINARIES if not _which(b)]
    if missing:
        raise SlurmUnavailable(f"after apt-get install, still missing: {', '.join(missing)}")


class SlurmCluster:
    """Start/stop a one-node cluster whose state lives under ``base`` (use as a context manager)."""

    def __init__(self, base: Path, cluster_name: str = "calqltest"):
        self.base = Path(base).resolve()
        if MARKER not in str(self.base):
            raise ValueError(f"the state folder's path must contain '{MARKER}' (got {self.base})")
        self.cluster_name = cluster_name
        self.conf = self.base / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._linked = False

    # ------------------------------------------------------------------ config
    def _node_line(self) -> str:
        out = _run([_which("slurmd") or "slurmd", "-C"]).stdout
        line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), None)
        if line is None:
            raise SlurmUnavailable(f"`slurmd -C` printed no NodeName line: {out}")
        return f"{line.strip()} NodeAddr=127.0.0.1 State=UNKNOWN"

    def write_config(self) -> None:
        for sub in ("state", "spool", "log", "run"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        b = self.base
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName={self.cluster_name}",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CryptoType=crypto/munge",
                    "SlurmctldPort=6817",
                    "SlurmdPort=6818",
                    f"StateSaveLocation={b}/state",
                    f"SlurmdSpoolDir={b}/spool",
                    f"SlurmctldPidFile={b}/run/slurmctld.pid",
                    f"SlurmdPidFile={b}/run/slurmd.pid",
                    f"SlurmctldLogFile={b}/log/slurmctld.log",
                    f"SlurmdLogFile={b}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "MinJobAge=300",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    self._node_line(),
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            self._linked = True
            return
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            target = os.readlink(SYSTEM_CONF)
            if MARKER in target:  # left behind by a killed run of this helper: its folder is gone
                log.warning("removing stale link %s -> %s", SYSTEM_CONF, target)
                SYSTEM_CONF.unlink()
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise SlurmUnavailable(
                f"{SYSTEM_CONF} exists and is not this test's link; refusing to replace it "
                "(another Slurm setup or test cluster is present)"
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked = True

    def _unlink_system_conf(self) -> None:
        if self._linked and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()
        self._linked = False

    # ------------------------------------------------------------------ daemons
    def _start(self, name: str, cmd: list[str]) -> None:
        log_file = open(self.base / "log" / f"{name}.stdout", "ab")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        self._procs.append((name, proc))
        time.sleep(0.3)
        if proc.poll() is not None:
            raise SlurmUnavailable(
                f"{name} exited at start ({proc.returncode}); see {self.base / 'log'}: " + self._tail(name)
            )

    def _tail(self, name: str) -> str:
        texts = []
        for path in (self.base / "log").glob(f"{name}*"):
            texts.append(path.read_text(errors="replace")[-1500:])
        return "\n".join(texts)

    def _wait(self, what: str, check, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise SlurmUnavailable(f"{name} died while waiting for {what}: " + self._tail(name))
            time.sleep(0.5)
        raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")

    def start(self) -> SlurmCluster:
        ensure_installed()
        if not MUNGE_KEY.exists():
            raise SlurmUnavailable(f"{MUNGE_KEY} is missing (the munge package creates it)")
        self.write_config()
        self._link_system_conf()
        try:
            run_munge = Path("/run/munge")
            run_munge.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_munge, "munge", "munge")
            self._start("munged", ["runuser", "-u", "munge", "--", _which("munged") or "munged", "-F"])
            self._wait("munge", lambda: _run(["munge", "-n"], check=False).returncode == 0, 15)
            self._start("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-f", str(self.conf)])
            self._wait("slurmctld", lambda: "UP" in _run(["scontrol", "ping"], check=False).stdout)
            self._start("slurmd", [_which("slurmd") or "slurmd", "-D", "-f", str(self.conf)])
            self._wait("an idle node", lambda: "idle" in _run(["sinfo", "-h", "-o", "%T"], check=False).stdout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM each daemon by PID, newest first, and wait; SIGKILL what does not exit."""
        while self._procs:
            name, proc = self._procs.pop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
                    proc.kill()
                    proc.wait(timeout=10)
        self._unlink_system_conf()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
