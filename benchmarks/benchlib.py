"""Pieces the benchmark scripts share: sizes with units and the machine's load while a run goes."""
import statistics
import threading


def parse_size(text):
    """'64MiB' -> 67108864; plain numbers are bytes."""
    text = text.strip().lower()
    for suffix, unit in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * unit
    return int(text)


def load1():
    """The 1-minute load average: every figure is reported next to it (2 shared cores make it matter)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class LoadSampler:
    """The 1-minute load average every 5 s while a run is going; stop() returns their median."""

    def __init__(self):
        self.samples = [load1()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(5):
            self.samples.append(load1())

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.samples.append(load1())
        return statistics.median(self.samples)
