"""What the figures were measured on: CPU, cores, kernel, compiler, versions."""

import configparser
import os
import platform
import subprocess
import time
from importlib import metadata

from bench import runner

DISTRIBUTIONS = ["gevent", "eventlet", "uvloop", "trio", "greenlet", "matplotlib", "websockets",
                 "gevent-websocket", "wsproto", "httptools", "gunicorn", "waitress", "uvicorn",
                 "granian"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cc_version():
    try:
        out = subprocess.run(["cc", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def microthreads_version():
    """The installed distribution's version, else the one in setup.cfg."""
    try:
        return metadata.version("microthreads")
    except metadata.PackageNotFoundError:
        config = configparser.ConfigParser()
        config.read(runner.ROOT / "setup.cfg")
        return config.get("metadata", "version", fallback="unknown")


def versions():
    found = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["microthreads"] = microthreads_version()
    return found


def cpu_busy(cpus, seconds=1.0):
    """How busy each of cpus was over `seconds` (0..1), before we start: other
    people's work on these CPUs makes every figure noisy."""

    def sample():
        ticks = {}
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    values = list(map(int, fields))
                    idle = values[3] + (values[4] if len(values) > 4 else 0)
                    ticks[int(name[3:])] = (sum(values), idle)
        return ticks

    try:
        first = sample()
        time.sleep(seconds)
        second = sample()
    except OSError:
        return {}
    busy = {}
    for cpu in cpus:
        total = second[cpu][0] - first[cpu][0]
        idle = second[cpu][1] - first[cpu][1]
        busy[cpu] = round(1 - idle / total, 2) if total else 0.0
    return busy


def describe():
    cpus = sorted({runner.SERVER_CPU, runner.CLIENT_CPU})
    return {
        "busy_before": {str(cpu): share for cpu, share in cpu_busy(cpus).items()},
        "loadavg": os.getloadavg(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "server_cpu": runner.SERVER_CPU,
        "client_cpu": runner.CLIENT_CPU,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cc": cc_version(),
        "versions": versions(),
    }


def summary(machine):
    found = machine["versions"]
    libraries = ", ".join(f"{name} {found[name]}" for name in [*DISTRIBUTIONS, "microthreads"])
    busy = machine["busy_before"]
    warning = ""
    if any(share > 0.2 for share in busy.values()):
        shares = ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in busy.items())
        warning = (f"\nwarning: other processes keep these CPUs busy ({shares} before the "
                   "run): expect noisy figures")
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores (server on CPU "
        f"{machine['server_cpu']}, load generator on CPU {machine['client_cpu']}), "
        f"Linux {machine['kernel']}\n"
        f"         {machine['python']}, {machine['cc']}\n"
        f"         {libraries}"
        f"{warning}"
    )
