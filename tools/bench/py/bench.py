"""`npm run bench` (scripts/bench.sh): Thorax measured against its ceilings and a plain consumer.

Parts, all in one run on one broker (issue 11, docs/inference.md "Benchmark"):
  ceilings  native decode+resize (sharp, all cores) per raster input; raw onnxruntime-node for the
            committed model and DenseNet-121; scripts/bench-decode.mjs; the results ceiling
            (tools/bench/src/results-bench.ts) when it is built
  stages    each service alone on a pre-filled topic: ingest and preprocess per input, inference
            (committed model and DenseNet-121), each with its ratio to its ceiling; results alone
            is results-bench.ts's own side-by-side figure (listed with the ceilings)
  pipeline  `scripts/start.sh` (`npm start`, default settings) in both topologies, co-located
            (THORAX_TOPOLOGY=pipeline, the default) and four processes (split), against tools/bench/py/consumer.py, per
            input: publish N distinct keys with librdkafka, time from the first publish to the last
            findings event; ratios to the consumer
  latency   publish -> findings p50/p95/p99 of the pipeline at half its measured capacity
  predict   POST /v1/predict round trips, one at a time (ingest's synchronous edge), p50/p95
  delivery  the cost of exactly-once: one consume-process-produce stage through the real consumer
            port, exactly-once against at-least-once, alternating rounds
            (libs/kafka/src/bench/delivery-bench.ts; the worst case: its handler only publishes)
The measuring side (load generator, findings readers) is librdkafka for both contenders.
Inputs are synthetic chest-like images, generated reproducibly (seeded) into .data/bench/inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[3]
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:24092")
QUIET = {"bootstrap.servers": BROKERS, "log_level": 2}  # librdkafka: critical only (no reconnect noise)
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "24080"))
GRPC_PORT = int(os.environ.get("BENCH_GRPC_PORT", str(PORT_BASE + 10)))
TINY_DIR = ROOT / "models" / "thorax-tiny-cnn"
DENSENET_DIR = Path(os.environ.get("BENCH_DENSENET_DIR", ROOT / ".data" / "bench-models" / "densenet121"))
INPUT_KINDS = {
    "png512": ("NIH-like PNG 512², 8-bit", "image/png"),
    "png1024": ("the same upscaled to 1024²", "image/png"),
    "dcm-raw": ("DICOM 2048×2500 16-bit (12 stored), uncompressed", "application/dicom"),
    "dcm-jls": ("DICOM 2048×2500 16-bit, JPEG-LS lossless", "application/dicom"),
    "dcm-j2k": ("DICOM 2048×2500 16-bit, JPEG 2000 lossless", "application/dicom"),
}
PORTS = {"results": PORT_BASE, "ingest": PORT_BASE + 1, "preprocess": PORT_BASE + 2, "inference": PORT_BASE + 3}


def say(line: str) -> None:
    print(line, flush=True)


def note(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ inputs (synthetic, seeded)
def chest(w: int, h: int, seed: int, top: int, noise: float = 0.015) -> np.ndarray:
    """A chest-like radiograph: body, two dark lung fields with ribs, heart and spine, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (x - w / 2) / (w * 0.46), (y - h / 2) / (h * 0.48)
    body = nx**2 + ny**2 < 1
    img = np.where(body, 0.62, 0.06).astype(np.float32)
    for side in (-1, 1):
        cx = side * (0.42 + rng.uniform(-0.03, 0.03))
        lung = ((nx - cx) / 0.3) ** 2 + ((ny + 0.05) / 0.62) ** 2 < 1
        ribs = 0.07 * (np.sin(ny * (34 + rng.uniform(-2, 2)) + np.abs(nx - cx) * 6) > 0.55)
        img = np.where(lung, 0.24 + ribs, img)
    img += 0.3 * ((((nx - 0.1) / 0.24) ** 2 + ((ny - 0.28) / 0.22) ** 2) < 1)
    img += 0.18 * ((np.abs(nx) < 0.06) & body)
    img = cv2.GaussianBlur(img, (0, 0), w / 300) + rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img * top, 0, top)


def dicom_file(pixels: np.ndarray, syntax: str, seed: int) -> bytes:
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLSLossless,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"thorax-bench-{syntax}-{seed}"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"thorax-bench-study-{seed}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"thorax-bench-series-{seed}"])
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PatientID, ds.AccessionNumber = f"BENCH{seed}", f"A{seed}"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if syntax == "jls":
        ds.compress(JPEGLSLossless, pixels.astype(np.uint16))
    elif syntax == "j2k":
        ds.compress(JPEG2000Lossless, pixels.astype(np.uint16), j2k_cr=[1])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_inputs(kinds: list[str], pool: int) -> dict[str, list[bytes]]:
    """`pool` distinct files per kind, cached under .data/bench/inputs (same seeds, same bytes)."""
    folder = ROOT / ".data" / "bench" / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[bytes]] = {}
    for kind in kinds:
        files = []
        for seed in range(1, pool + 1):
            path = folder / f"{kind}-{seed}.{'png' if kind.startswith('png') else 'dcm'}"
            if not path.exists():
                if kind == "png512":
                    data = cv2.imencode(".png", chest(512, 512, seed, 255).round().astype(np.uint8))[1].tobytes()
                elif kind == "png1024":
                    small = chest(512, 512, seed, 255).round().astype(np.uint8)
                    data = cv2.imencode(".png", cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_CUBIC))[1]
                    data = data.tobytes()
                else:
                    data = dicom_file(chest(2048, 2500, seed, 4095, noise=0.004).round(), kind.split("-")[1], seed)
                path.write_bytes(data)
            files.append(path)
        out[kind] = [p.read_bytes() for p in files]
        note(f"input {kind}: {len(files)} files, {sum(len(b) for b in out[kind]) / len(files) / 1e6:.2f} MB each")
    return out


def input_paths(kind: str, pool: int) -> list[str]:
    ext = "png" if kind.startswith("png") else "dcm"
    return [str(ROOT / ".data" / "bench" / "inputs" / f"{kind}-{s}.{ext}") for s in range(1, pool + 1)]


# ------------------------------------------------------------------ Kafka (librdkafka)
def topic_specs() -> dict[str, tuple[int, dict[str, str]]]:
    """deploy/kafka/topics.conf: base name -> (partitions, configs), single-broker replication."""
    specs = {}
    for line in (ROOT / "deploy" / "kafka" / "topics.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, partitions, _rf, *rest = line.split()
        cfg = dict(kv.split("=", 1) for kv in rest)
        cfg["min.insync.replicas"] = "1"
        specs[name] = (int(partitions), cfg)
    return specs


def create_topics(names: dict[str, str]) -> None:
    """names: base topic (thorax.studies.v1 …) -> name to create, with the base's settings."""
    specs = topic_specs()
    new = [NewTopic(n, specs[b][0], 1, config=specs[b][1]) for b, n in names.items()]
    admin = AdminClient(dict(QUIET))  # kept alive until every future resolves
    for topic, future in admin.create_topics(new).items():
        try:
            future.result()
        except Exception as error:  # an existing topic is fine (the default topics on a fresh broker)
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
        note(f"topic {topic}")


def producer() -> Producer:
    return Producer(
        {
            "bootstrap.servers": BROKERS,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": 52_428_800,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


FAILED_SENDS: list[str] = []


def delivered(err: KafkaError | None, _msg: object) -> None:
    if err is not None:
        FAILED_SENDS.append(str(err))


def send(p: Producer, topic: str, key: str, value: bytes, content_type: str) -> None:
    while True:
        try:
            headers = [("content-type", content_type.encode())]
            p.produce(topic, value, key=key.encode(), headers=headers, on_delivery=delivered)
            p.poll(0)
            return
        except BufferError:
            p.poll(0.05)


def partitions(topic: str) -> list[int]:
    meta = AdminClient(dict(QUIET)).list_topics(topic, timeout=10)
    return sorted(meta.topics[topic].partitions)


def record_ends(topic: str, end: dict[int, int]) -> dict[int, int]:
    """Per partition, the offset after its last committed record (read_committed, up to `end`).
    A topic written in transactions ends in a commit marker, one offset past that; a consumer
    group's committed offset passes the marker only once its member probes the idle partition."""
    c = Consumer({**QUIET, "group.id": f"bench-ends-{uuid.uuid4()}", "enable.auto.commit": False})
    out = {p: 0 for p in end}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in end])
        deadline, last = time.time() + 120, time.time()
        while time.time() < deadline:
            for m in c.consume(1000, 0.5):
                if not m.error():
                    out[m.partition()] = max(out[m.partition()], m.offset() + 1)
                    last = time.time()
            positions = c.position([TopicPartition(topic, p) for p in end])
            if all(tp.offset >= end[tp.partition] for tp in positions) or time.time() - last > 3:
                return out  # at the end, or nothing more to read (the topic was complete when called)
        raise RuntimeError(f"could not read {topic} to its end")
    finally:
        c.close()


def high_watermarks(topic: str) -> dict[int, int]:
    c = Consumer({**QUIET, "group.id": f"bench-wm-{uuid.uuid4()}"})
    try:
        for attempt in range(40):  # a topic created a moment ago may have no leader yet
            try:
                return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions(topic)}
            except KafkaException as error:
                if attempt == 39 or error.args[0].code() == KafkaError._TRANSPORT:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")
    finally:
        c.close()


class Watcher:
    """Reads a findings topic from its current end and notes when each key's event arrives."""

    def __init__(self, topic: str) -> None:
        self.seen: dict[str, float] = {}
        self.stamps: dict[str, float] = {}  # key -> the record's own timestamp (s), first event
        self.errors: dict[str, str] = {}  # key -> error code of a status "error" event
        self.stop = False
        self.c = Consumer({**QUIET, "group.id": f"bench-w-{uuid.uuid4()}", "fetch.wait.max.ms": 5})
        self.c.assign([TopicPartition(topic, p, o) for p, o in high_watermarks(topic).items()])
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            for m in self.c.consume(1000, 0.05):
                if not m.error() and m.key() is not None:
                    key = m.key().decode()
                    self.seen.setdefault(key, time.time())
                    self.stamps.setdefault(key, m.timestamp()[1] / 1000)
                    if b'"error"' in (m.value() or b""):
                        event = json.loads(m.value() or b"{}")
                        if event.get("status") == "error":
                            self.errors[key] = (event.get("error") or {}).get("code", "?")

    def wait(self, keys: list[str], timeout: float, procs: tuple[subprocess.Popen[bytes], ...] = ()) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(k in self.seen for k in keys):
                return True
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args} exited with {proc.returncode} (logs in the run folder)")
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.c.close()


# ------------------------------------------------------------------ processes
def wait_ready(port: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError):  # not listening yet, or 503 while it connects
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"service on port {port} not ready after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_service(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One service as scripts/start.sh starts it (same node flags, default settings)."""
    full = {**os.environ, "KAFKA_BROKERS": BROKERS, "HTTP_PORT": str(PORTS[name]), "GRPC_PORT": str(GRPC_PORT)}
    full.update(env)
    script = ROOT / "dist" / "apps" / name / "src" / "main.js"
    cmd = ["node", "--enable-source-maps", "--disable-warning=TimeoutNegativeWarning", str(script)]
    proc = subprocess.Popen(cmd, env=full, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(PORTS[name])
    return proc


THORAX_MAX_BATCH = 8  # INFERENCE_MAX_BATCH's default
CONSUMER_MAX_BATCH = 16  # consumer.py --max-batch's default


def python_floor(files: list[str], model: str, seconds: float) -> dict[str, Any]:
    """The consumer's native work alone, as ceilings.ts measures Thorax's: CPU ms per image, one
    image at a time on one thread (its decode function: OpenCV + Pillow; ONNX Runtime with one
    thread at the consumer's batch size)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from consumer import decode  # the consumer's own code, not a copy

    def per_call(work: Any) -> float:
        for _ in range(5):
            work()
        calls, until, start = 0, time.perf_counter() + seconds, time.process_time()
        while time.perf_counter() < until or calls < 10:
            work()
            calls += 1
        return (time.process_time() - start) * 1000 / calls

    cv2.setNumThreads(1)
    out: dict[str, Any] = {"decode": {}}
    for f in files:
        data = Path(f).read_bytes()
        out["decode"][f] = per_call(lambda data=data: decode(data))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    batch = np.zeros((CONSUMER_MAX_BATCH, 1, 256, 256), np.uint8) + (
        np.arange(256 * 256, dtype=np.uint32) * 31 % 251
    ).astype(np.uint8).reshape(256, 256)
    feeds = {session.get_inputs()[0].name: batch}
    out["ort"] = per_call(lambda: session.run(None, feeds)) / CONSUMER_MAX_BATCH
    return out


def floor_totals(f: dict[str, float]) -> tuple[float, float]:
    """Thorax's and the consumer's native floor per image (decode + ONNX Runtime), in ms."""
    return f["thorax_decode_ms"] + f["thorax_ort_ms"], f["consumer_decode_ms"] + f["consumer_ort_ms"]


def node_json(args: list[str], env: dict[str, str] | None = None) -> Any:
    out = subprocess.run(
        ["node", *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"node {args[0]} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


DICOM_LABELS = {"uncompressed": "dcm-raw", "JPEG-LS": "dcm-jls", "JPEG 2000": "dcm-j2k"}


def dicom_ceilings(lines: list[str]) -> dict[str, float]:
    """The DICOM ceilings of scripts/bench-decode.mjs (its part 2, last figure of a DICOM row:
    libvips' resize of the decoded 2048x2500 samples on every core; the codec is not in it)."""
    out: dict[str, float] = {}
    part2 = False
    for line in lines:
        part2 = part2 or line.startswith("2.")
        if not part2 or not line.startswith("DICOM"):
            continue
        rates = re.findall(r"([\d.]+)/s", line)
        for words, kind in DICOM_LABELS.items():
            if words in line.split("  ")[0] and rates:
                out[kind] = float(rates[-1])
    return out


def latest_model(model_dir: Path) -> Path:
    return max(p for p in model_dir.iterdir() if (p / "model.onnx").exists()) / "model.onnx"


def rate_of(stamps: list[float]) -> float:
    """Records/s between the first and the last output record (start-up excluded)."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgids: set[int]) -> float:
    """User + system CPU seconds so far of every live process in these process groups (/proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp ... utime is field 14, stime 15 (1-based in proc(5))
        if int(fields[2]) in pgids:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def process_name(pid: str, comm: str) -> str:
    """A Thorax service by its script (dist/apps/<name>/, the co-located pipeline.js), the consumer by
    consumer.py, anything else by its command name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except OSError:
        return comm
    if found := re.search(r"dist/apps/([a-z]+)/", cmdline):
        return found.group(1)
    for script, name in (("pipeline.js", "pipeline"), ("consumer.py", "consumer")):
        if script in cmdline:
            return name
    return comm


def thread_cpu_seconds(pgids: set[int]) -> dict[str, float]:
    """CPU seconds so far per thread kind of every live process in these process groups: the main
    thread as `<process name>/main`, the others as `<process name>/<thread name>` with digits dropped
    (libvips worker, libuv-worker, V8Worker, WorkerThread, rdk:broker, ...)."""
    out: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                head, rest = f.read().rsplit(b")", 1)
            if int(rest.split()[2]) not in pgids:
                continue
            process = process_name(entry, head.split(b"(", 1)[1].decode(errors="replace"))
            tasks = os.listdir(f"/proc/{entry}/task")
        except OSError:
            continue
        for tid, comm, seconds in task_cpu(entry, tasks):
            name = "main" if tid == int(entry) else re.sub(r"[0-9]+", "", comm).strip(" -:#_")
            key = f"{process}/{name}"
            out[key] = out.get(key, 0.0) + seconds
    return out


def task_cpu(pid: str, tids: list[str]) -> list[tuple[int, str, float]]:
    """(thread id, /proc name, CPU seconds so far: user + system) of each of these threads of a
    process that is still there."""
    out = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                head, rest = f.read().rsplit(b")", 1)
        except OSError:
            continue
        fields = rest.split()
        comm = head.split(b"(", 1)[1].decode(errors="replace")
        out.append((int(tid), comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS))
    return out


def thread_cpu_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per image by thread kind between two thread_cpu_seconds readings, largest first."""
    per = {k: (v - before.get(k, 0.0)) * 1000 / max(1, n) for k, v in after.items()}
    return dict(sorted(((k, round(v, 2)) for k, v in per.items() if v >= 0.05), key=lambda kv: -kv[1]))


BROKER_THREAD_KINDS = (
    # (kind, a part of the JVM thread's full name), first match wins
    ("requests", "request-handler"),
    ("network", "network-thread"),
    ("txn markers", "TxnMarkerSender"),
    ("jit", "CompilerThread"),
    ("gc", "GC Thread"),
    ("gc", "G1 "),
    ("purgatory", "ExpirationReaper"),
    ("scheduler", "kafka-scheduler"),
    ("kraft", "raft"),
    ("kraft", "controller"),
)
_broker_names: dict[int, str] = {}


def broker_thread_names(pid: str, tids: list[int]) -> dict[int, str]:
    """The broker's JVM thread names by native thread id (jcmd Thread.print, again only when a
    thread appears that it did not name yet: /proc truncates names to 15 characters)."""
    if any(t not in _broker_names for t in tids):
        try:
            out = subprocess.run(
                ["jcmd", pid, "Thread.print"], check=False, capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for m in re.finditer(r'^"([^"]+)".*?nid=(0x[0-9a-f]+|[0-9]+)', out, re.MULTILINE):
            nid = m.group(2)
            _broker_names[int(nid, 16) if nid.startswith("0x") else int(nid)] = m.group(1)
    return _broker_names


def broker_cpu_seconds() -> dict[str, float] | None:
    """CPU seconds so far of the broker this bench started (BENCH_BROKER_PID, set by scripts/bench.sh):
    in total, and by thread kind (BROKER_THREAD_KINDS; "jit" is its JIT compiler); None for a broker
    started elsewhere."""
    pid = os.environ.get("BENCH_BROKER_PID", "")
    if not pid.isdigit():
        return None
    try:
        tasks = task_cpu(pid, os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None
    names = broker_thread_names(pid, [tid for tid, _, _ in tasks])
    out: dict[str, float] = {"total": 0.0, "jit": 0.0}
    for tid, comm, seconds in tasks:
        name = names.get(tid) or comm
        kind = next((k for k, part in BROKER_THREAD_KINDS if part in name), "other")
        out["total"] += seconds
        out[kind] = out.get(kind, 0.0) + seconds
    return out


def settle(pgids: set[int], idle_share: float = 0.1, window: float = 1.0, limit: float = 20.0) -> float:
    """Waits until these process groups use under idle_share of one core over a window (at most
    limit seconds); returns the seconds waited."""
    start = time.time()
    before = group_cpu_seconds(pgids)
    while time.time() - start < limit:
        time.sleep(window)
        now = group_cpu_seconds(pgids)
        if now - before < idle_share * window:
            break
        before = now
    return time.time() - start


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# ------------------------------------------------------------------ the benchmark
class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.run = time.strftime("%Y%m%d-%H%M%S")
        self.dir = ROOT / ".data" / "bench" / self.run
        self.dir.mkdir(parents=True, exist_ok=True)
        self.report: dict[str, Any] = {"run": self.run, "args": vars(a), "brokers": BROKERS}
        self.tiny = latest_model(TINY_DIR)
        self.densenet = latest_model(DENSENET_DIR) if DENSENET_DIR.exists() else None
        self.inputs = make_inputs(a.inputs, a.pool)
        self.stage_cpu_ms = float("nan")  # of the last stage() run
        self.stage_outputs: dict[str, int] = {}  # of the last stage() run: records per output topic
        self.findings_events = 0  # findings events the stages of the current input wrote
        self.warmed: set[str] = set()  # contender tags whose process (and broker paths) had their warm-up

    def n_for(self, kind: str) -> int:
        return self.a.n if kind.startswith("png") else self.a.dicom_n

    def key(self, *parts: object) -> str:
        return "-".join(str(p) for p in (*parts, self.run))

    def fill(self, topic: str, kind: str, n: int, tag: str) -> list[str]:
        p = producer()
        files, content_type = self.inputs[kind], INPUT_KINDS[kind][1]
        keys = [self.key(tag, kind, i) for i in range(n)]
        for i, k in enumerate(keys):
            send(p, topic, k, files[i % len(files)], content_type)
        p.flush(300)
        if FAILED_SENDS:
            raise RuntimeError(f"{len(FAILED_SENDS)} records not acknowledged by Kafka: {FAILED_SENDS[0]}")
        return keys

    # ---------------------------------------------------------------- ceilings
    def ceilings(self) -> None:
        models = [str(self.tiny)] + ([str(self.densenet)] if self.densenet else [])
        rasters = [input_paths(k, 1)[0] for k in self.a.inputs if k.startswith("png")]
        seconds = "--seconds=1.5" if self.a.quick else "--seconds=4"
        note("ceilings: sharp decode+resize, raw onnxruntime-node")
        c = node_json(["dist/tools/bench/src/ceilings.js", seconds, "--decode", *rasters, "--ort", *models])
        self.report["ceilings"] = {
            "decode": {k: c["decode"][input_paths(k, 1)[0]] for k in self.a.inputs if k.startswith("png")},
            "ort": {("tiny" if m == str(self.tiny) else "densenet121"): v for m, v in c["ort"].items()},
            "cores": c["cores"],
        }
        note("ceilings: the native floor, one image at a time on one thread (Thorax's and the consumer's)")
        floor_s = 1.0 if self.a.quick else 3.0
        py = python_floor(rasters, str(self.tiny), floor_s)
        self.report["ceilings"]["floor"] = {
            k: {
                "thorax_decode_ms": c["floor"]["decode"][input_paths(k, 1)[0]],
                "thorax_ort_ms": c["floor"]["ort"][str(self.tiny)][str(THORAX_MAX_BATCH)],
                "consumer_decode_ms": py["decode"][input_paths(k, 1)[0]],
                "consumer_ort_ms": py["ort"],
            }
            for k in self.a.inputs
            if k.startswith("png")
        }
        if not self.a.quick:
            note("ceilings: scripts/bench-decode.mjs (the preprocess decode path, for reference)")
            out = subprocess.run(
                ["node", "scripts/bench-decode.mjs"],
                cwd=ROOT,
                env={**os.environ, "BENCH_SECONDS": "2"},
                capture_output=True,
                text=True,
                check=False,
            )
            self.report["bench_decode"] = (out.stdout + out.stderr).strip().splitlines()
            self.report["ceilings"]["decode"].update(dicom_ceilings(self.report["bench_decode"]))
        results_bench = ROOT / "dist" / "tools" / "bench" / "src" / "results-bench.js"
        if results_bench.exists():
            note("ceilings: tools/bench/src/results-bench.ts (raw inserts into the results store)")
            out = subprocess.run(
                ["node", str(results_bench)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "BENCH_QUICK": "1" if self.a.quick else "0"},
            )
            self.report["results_bench"] = (out.stdout + out.stderr).strip().splitlines()
            self.report["ceilings"]["results"] = self.results_ceiling(out.stdout)

    @staticmethod
    def results_ceiling(stdout: str) -> dict[str, Any] | None:
        """results-bench's last line: {engine, events, raw_inserts_per_s, results_per_s, ratio}."""
        for line in reversed(stdout.strip().splitlines()):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "raw_inserts_per_s" in data:
                return data
        return None

    # ---------------------------------------------------------------- stages alone
    def stage(self, name: str, env: dict[str, str], out_topics: list[str], expect: int, timed: str) -> float:
        # Output records are counted as they are read (read_committed), not by offsets: a topic
        # written in transactions has a commit marker at an offset of its own.
        watchers = {t: Watcher(t) for t in out_topics}
        try:
            proc = start_service(name, env, self.dir / f"{name}.log")
            try:
                # CPU per record of the service's process (user + system, every thread), from ready
                # to its last output: start-up and model warm-up are not in it.
                cpu0 = group_cpu_seconds({proc.pid})
                deadline = time.time() + max(300, expect)
                while sum(len(w.seen) for w in watchers.values()) < expect:
                    if time.time() > deadline:
                        raise RuntimeError(f"{name} answered fewer than {expect} records")
                    time.sleep(0.1)
                self.stage_cpu_ms = (group_cpu_seconds({proc.pid}) - cpu0) * 1000 / expect
                self.stage_outputs = {t: len(w.seen) for t, w in watchers.items()}
                self.findings_events += self.stage_outputs.get(env.get("TOPIC_FINDINGS", ""), 0)
                return rate_of(sorted(watchers[timed].stamps.values()))
            finally:
                stop_process(proc)
        finally:
            for w in watchers.values():
                w.close()

    def stages(self) -> None:
        out: dict[str, Any] = {}
        first = self.a.inputs[0]
        for kind in self.a.inputs:
            try:
                out[kind] = self.stages_of(kind, first)
            except RuntimeError as error:  # one input that stalls a stage must not hide the others
                note(f"stages {kind}: FAILED: {error}")
                out[kind] = {"failed": str(error)}
        self.report["stages"] = out

    def results_alone(self, env: dict[str, str], group: str, events: int) -> tuple[float, float]:
        """Results on the findings the stages wrote: events/s and CPU per event, from ready until
        its group's committed offsets pass the topic's last record (results writes no topic to
        watch). Not until the topic's end: that is the last transaction's commit marker, which the
        group's offset passes only once the idle partition is probed (docs/inference.md, "Kafka
        client"), seconds later."""
        topic = env["TOPIC_FINDINGS"]
        end = record_ends(topic, high_watermarks(topic))
        proc = start_service("results", {**env, "RESULTS_GROUP_ID": group}, self.dir / "results.log")
        c = Consumer({**QUIET, "group.id": group, "enable.auto.commit": False})
        try:
            cpu0, t0 = group_cpu_seconds({proc.pid}), time.time()
            parts = [TopicPartition(topic, p) for p in end]
            while not all(tp.offset >= end[tp.partition] for tp in c.committed(parts, 10)):
                if time.time() > t0 + max(300, events):
                    raise RuntimeError(f"results did not commit the {events} findings events")
                time.sleep(0.05)
            seconds = time.time() - t0
            return events / seconds, (group_cpu_seconds({proc.pid}) - cpu0) * 1000 / max(1, events)
        finally:
            c.close()
            stop_process(proc)

    def stages_of(self, kind: str, first: str) -> dict[str, Any]:
        n = self.n_for(kind)
        prefix = f"bench.{self.run}.{kind}"
        t = {
            b: f"{prefix}.{b.split('.')[1]}"
            for b in ("thorax.studies.v1", "thorax.images.v1", "thorax.tensors.v1", "thorax.findings.v1")
        }
        create_topics({**t, **{f"{b}.dlq": f"{v}.dlq" for b, v in t.items()}})
        env = {
            "TOPIC_STUDIES": t["thorax.studies.v1"],
            "TOPIC_IMAGES": t["thorax.images.v1"],
            "TOPIC_TENSORS": t["thorax.tensors.v1"],
            "TOPIC_FINDINGS": t["thorax.findings.v1"],
            "MODEL_DIR": str(TINY_DIR),
            "RESULTS_DATA_DIR": str(self.dir / f"store-{kind}"),
        }
        group = f"bench-{self.run}-{kind}"
        self.findings_events = 0
        note(f"stages {kind}: filling {n} records")
        self.fill(env["TOPIC_STUDIES"], kind, n, "s")
        r: dict[str, float] = {}
        r["ingest"] = self.stage(
            "ingest",
            {**env, "INGEST_GROUP_ID": f"{group}-ingest"},
            [env["TOPIC_IMAGES"], env["TOPIC_FINDINGS"]],
            n,
            env["TOPIC_IMAGES"],
        )
        r["ingest_cpu_ms"] = self.stage_cpu_ms
        note(f"stages {kind}: ingest {r['ingest']:.1f} img/s, {r['ingest_cpu_ms']:.1f} ms CPU per image")
        r["preprocess"] = self.stage(
            "preprocess",
            {**env, "PREPROCESS_GROUP_ID": f"{group}-preprocess"},
            [env["TOPIC_TENSORS"], env["TOPIC_FINDINGS"]],
            n,
            env["TOPIC_TENSORS"],
        )
        r["preprocess_cpu_ms"] = self.stage_cpu_ms
        note(f"stages {kind}: preprocess {r['preprocess']:.1f} img/s, {r['preprocess_cpu_ms']:.1f} ms CPU per image")
        if kind == first:
            tensors = self.stage_outputs[env["TOPIC_TENSORS"]]
            r["inference"] = self.stage(
                "inference",
                {**env, "INFERENCE_GROUP_ID": f"{group}-inference"},
                [env["TOPIC_FINDINGS"]],
                tensors,
                env["TOPIC_FINDINGS"],
            )
            r["inference_cpu_ms"] = self.stage_cpu_ms
            note(
                f"stages {kind}: inference (tiny) {r['inference']:.1f} img/s, {r['inference_cpu_ms']:.1f} ms CPU per image"
            )
            events = self.findings_events
            r["results"], r["results_cpu_ms"] = self.results_alone(env, f"{group}-results", events)
            note(f"stages {kind}: results {r['results']:.1f} events/s, {r['results_cpu_ms']:.1f} ms CPU per event")
            if self.densenet:
                dn = f"{prefix}.findings-densenet"
                create_topics({"thorax.findings.v1": dn})
                dense_env = {
                    **env,
                    "TOPIC_FINDINGS": dn,
                    "MODEL_DIR": str(DENSENET_DIR),
                    "INFERENCE_GROUP_ID": f"{group}-inference-densenet",
                }
                dense_n = min(tensors, self.a.densenet_n)
                r["inference_densenet121"] = self.stage("inference", dense_env, [dn], dense_n, dn)
                r["inference_densenet121_cpu_ms"] = self.stage_cpu_ms
                note(f"stages {kind}: inference (DenseNet-121) {r['inference_densenet121']:.1f} img/s")
        return r

    # ---------------------------------------------------------------- pipeline against the consumer
    def timed_run(
        self, topic: str, out_topic: str, kind: str, n: int, tag: str, procs: tuple[subprocess.Popen[bytes], ...]
    ) -> dict[str, Any]:
        """Publish n distinct keys as fast as librdkafka takes them; first publish -> last findings event."""
        w = Watcher(out_topic)
        try:
            # Not timed: the contender's JIT, model and codecs, and, on a process's first run, the
            # broker's JIT for this contender's requests (a fresh broker compiles its transaction and
            # fetch paths under the first minutes of load, which would land on whoever runs first).
            first = tag not in self.warmed
            count = min(self.a.warmup, max(4, self.n_for(kind))) if first else 4
            warm = self.fill(topic, kind, count, f"warm-{tag}")
            if not w.wait(warm, 300 + len(warm), procs):
                raise RuntimeError(f"{tag}: no findings for the warm-up records of {kind}")
            self.warmed.add(tag)
            p = producer()
            files, content_type = self.inputs[kind], INPUT_KINDS[kind][1]
            keys = [self.key(tag, kind, i) for i in range(n)]
            pgids = {proc.pid for proc in procs}  # each contender runs in a session of its own
            cpu0 = group_cpu_seconds(pgids)
            threads0 = thread_cpu_seconds(pgids)
            broker0 = broker_cpu_seconds()
            t0 = time.time()
            for i, k in enumerate(keys):
                send(p, topic, k, files[i % len(files)], content_type)
            p.flush(600)
            if FAILED_SENDS:
                raise RuntimeError(f"{len(FAILED_SENDS)} records not acknowledged by Kafka: {FAILED_SENDS[0]}")
            if not w.wait(keys, 120 + n, procs):
                raise RuntimeError(f"{tag}: {sum(k in w.seen for k in keys)}/{n} findings events for {kind}")
            last = max(w.seen[k] for k in keys)
            # CPU per image of the contender's processes over the run (steadier than the rate on a
            # shared machine; the pipeline's includes results storing every event, which the
            # consumer does not do).
            cpu_ms = (group_cpu_seconds(pgids) - cpu0) * 1000 / n
            threads = thread_cpu_ms(threads0, thread_cpu_seconds(pgids), n)
            broker1 = broker_cpu_seconds()
            broker = (
                {k: round((v - broker0.get(k, 0.0)) * 1000 / n, 2) for k, v in broker1.items()}
                if broker0 is not None and broker1 is not None
                else None
            )
            errors = sorted({w.errors[k] for k in keys if k in w.errors})
            failed = sum(k in w.errors for k in keys)
            if failed:
                note(f"{tag} {kind}: {failed}/{n} error events ({', '.join(errors)})")
            return {
                "n": n,
                "seconds": last - t0,
                "rate": n / (last - t0),
                "cpu_ms": cpu_ms,
                "threads_cpu_ms": threads,
                "broker_cpu_ms": broker,
                "errors": failed,
                "codes": errors,
            }
        finally:
            w.close()

    def start_stack(self, who: str) -> subprocess.Popen[bytes]:
        """`npm start` (scripts/start.sh) with default settings in the contender's topology and Kafka client."""
        topology, client = contender_parts(who)
        env = {
            **os.environ,
            "KAFKA_BROKERS": BROKERS,
            "THORAX_TOPOLOGY": topology,
            **({"KAFKA_CLIENT": client} if client else {}),
            "THORAX_LOG_DIR": str(self.dir / f"logs-{who}"),
            "RESULTS_DATA_DIR": str(self.dir / f"store-{who}"),
            "GRPC_PORT": str(GRPC_PORT),
            "INGEST_GRPC_PORT": str(GRPC_PORT + 1),
            "INGEST_DIMSE_PORT": "0",  # any free port: 11112 may be a running `npm start`'s
            **{f"{name.upper()}_HTTP_PORT": str(port) for name, port in PORTS.items()},
        }
        stack = subprocess.Popen(
            ["bash", "scripts/start.sh"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=(self.dir / f"start-{who}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        try:
            for port in PORTS.values():
                wait_ready(port)
        except BaseException:
            stop_process(stack, 120)
            raise
        return stack

    def contenders(self) -> None:
        """Per input: co-located (THORAX_TOPOLOGY=pipeline, npm start's default), the consumer, then split."""
        create_topics({b: b for b in topic_specs()})  # the default topics, as `npm start` expects them
        c_in, c_out = f"bench.{self.run}.consumer.studies", f"bench.{self.run}.consumer.findings"
        create_topics({"thorax.studies.v1": c_in, "thorax.findings.v1": c_out})
        consumer = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("consumer.py")),
                "--brokers",
                BROKERS,
                "--input",
                c_in,
                "--output",
                c_out,
                "--group",
                f"bench-{self.run}-consumer",
                "--model",
                str(self.tiny),
            ],
            stdout=(self.dir / "consumer.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out: dict[str, Any] = {kind: {} for kind in self.a.inputs}
        self.report["contenders"] = out
        try:
            for who in self.a.contenders:
                topology, client = contender_parts(who)
                note(
                    f"{who}: scripts/start.sh, THORAX_TOPOLOGY={topology}"
                    f"{f', KAFKA_CLIENT={client}' if client else ''} (default settings otherwise)"
                )
                stack = self.start_stack(who)
                try:
                    for kind in self.a.inputs:
                        if "failed" in out[kind]:
                            continue
                        n = self.n_for(kind)
                        try:
                            note(f"{who} {kind}: {n} records")
                            out[kind][who] = self.timed_run(
                                "thorax.studies.v1", "thorax.findings.v1", kind, n, contender_tag(who), (stack,)
                            )
                            note(f"{who} {kind}: {out[kind][who]['rate']:.1f} img/s")
                            note(f"{who} {kind}: {out[kind][who]['cpu_ms']:.1f} ms CPU per image")
                            if "consumer" not in out[kind]:
                                out[kind]["consumer"] = self.timed_run(c_in, c_out, kind, n, "c", (consumer,))
                                note(
                                    f"consumer {kind}: {out[kind]['consumer']['rate']:.1f} img/s, "
                                    f"{out[kind]['consumer']['cpu_ms']:.1f} ms CPU per image"
                                )
                            out[kind][f"ratio_{who}"] = out[kind][who]["rate"] / out[kind]["consumer"]["rate"]
                        except RuntimeError as error:  # recorded, and the next input still runs
                            note(f"{who}/consumer {kind}: FAILED: {error}")
                            out[kind]["failed"] = f"{who}: {error}"
                            if stack.poll() is not None or consumer.poll() is not None:
                                break
                    # Latency and predict of each topology, at half of its own measured capacity.
                    if "latency" in self.a.only:
                        self.latency(out, who, stack)
                    if "predict" in self.a.only:
                        self.predict(out, who)
                finally:
                    stop_process(stack, 120)
        finally:
            stop_process(consumer)

    def latency(self, measured: dict[str, Any], who: str, stack: subprocess.Popen[bytes]) -> None:
        ok = [k for k, v in measured.items() if "failed" not in v and who in v]
        if not ok:
            return
        kind = "png512" if "png512" in ok else ok[0]
        # Half the measured capacity, or the rate asked for (A/B runs of two builds at equal load).
        rate = self.a.latency_rate or measured[kind][who]["rate"] / 2
        total = max(20, round(rate * self.a.latency_seconds))
        # Steady state, not the tail of the throughput run: results may still store its backlog.
        settled = settle({stack.pid})
        note(f"latency ({who}): {total} {kind} records at {rate:.1f}/s ({settled:.1f} s to go idle first)")
        w = Watcher("thorax.findings.v1")
        p = Producer(
            {
                "bootstrap.servers": BROKERS,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.max.bytes": 52_428_800,
            }
        )
        sent: dict[str, float] = {}
        files, content_type = self.inputs[kind], INPUT_KINDS[kind][1]
        try:
            # Not timed: the publisher's own start (metadata, connections, its producer id) and the
            # watcher's first fetch. Measured from the first record, those put this publisher's
            # start-up into the first records' latency (its slowest 1 % all fell in its first 0.3 s).
            warm = [
                self.key(f"lw{contender_tag(who)}", kind, i) for i in range(2 * len(partitions("thorax.studies.v1")))
            ]
            for i, k in enumerate(warm):
                send(p, "thorax.studies.v1", k, files[i % len(files)], content_type)
            p.flush(60)
            if not w.wait(warm, 120, (stack,)):
                raise RuntimeError(f"latency ({who}): no findings for the warm-up records")
            t0 = time.time()
            for i in range(total):
                # poll() returns early when it serves a delivery report: wait until the slot is due,
                # or the publisher sends in bursts and the figure measures queueing, not latency.
                while (pause := t0 + i / rate - time.time()) > 0:
                    p.poll(pause)
                k = self.key(f"l{contender_tag(who)}", kind, i)
                sent[k] = time.time()
                send(p, "thorax.studies.v1", k, files[i % len(files)], content_type)
            p.flush(60)
            w.wait(list(sent), 120)
            ms = [(w.seen[k] - t) * 1000 for k, t in sent.items() if k in w.seen]
            # When the slowest 1 % were published (seconds into the run): clustered at the start
            # is warm-up, spread evenly is the steady state's own tail.
            slowest_keys = sorted((k for k in sent if k in w.seen), key=lambda k: w.seen[k] - sent[k])[
                -max(1, len(ms) // 100) :
            ]
            slowest = [((w.seen[k] - sent[k]) * 1000, sent[k] - t0) for k in slowest_keys]
            # Where the slowest waited: before the findings record was produced (the stages, their
            # queues), or after it (the transaction holding it until its commit, and the fetch).
            # The record's timestamp is the producer's clock, which is this machine's.
            produced = [max(0.0, (w.stamps[k] - sent[k]) * 1000) for k in slowest_keys]
            visible = [max(0.0, (w.seen[k] - w.stamps[k]) * 1000) for k in slowest_keys]
            # Each second of the run (by publish time): its median and slowest latency, to see a
            # periodic stall (a timer of some component) as spikes at a fixed period.
            by_second: dict[int, list[float]] = {}
            for k, t in sent.items():
                if k in w.seen:
                    by_second.setdefault(int(t - t0), []).append((w.seen[k] - t) * 1000)
        finally:
            w.close()
        self.report.setdefault("latency", {})[who] = {
            "input": kind,
            "started_at": t0,
            "rate": rate,
            "rate_fixed": bool(self.a.latency_rate),
            "sent": total,
            "answered": len(ms),
            "p50": percentile(ms, 50),
            "p95": percentile(ms, 95),
            "p99": percentile(ms, 99),
            "max": max(ms) if ms else float("nan"),
            "slowest": [
                {"ms": round(v), "at_s": round(at, 1), "to_produce_ms": round(a), "to_visible_ms": round(b)}
                for (v, at), a, b in zip(slowest, produced, visible)
            ],
            "by_second": [
                {"s": second, "p50": round(percentile(v, 50)), "max": round(max(v))}
                for second, v in sorted(by_second.items())
            ],
        }
        note(f"latency ({who}): slowest 1 % " + ", ".join(f"{v:.0f} ms at {at:.1f} s" for v, at in slowest))
        note(
            f"latency ({who}): slowest per second "
            + " ".join(f"{second}:{max(v):.0f}" for second, v in sorted(by_second.items()))
        )
        note(
            f"latency ({who}): the slowest 1 % spent {statistics.mean(produced):.0f} ms on average until their findings"
            f" record was produced and {statistics.mean(visible):.0f} ms from there until it was visible (committed, fetched)"
        )

    def delivery(self) -> None:
        """libs/kafka's delivery bench on this broker: exactly-once / at-least-once, same run."""
        note("delivery: exactly-once against at-least-once (delivery-bench.js)")
        env = {"KAFKA_BROKERS": BROKERS, **({"BENCH_QUICK": "1"} if self.a.quick else {})}
        try:
            self.report["delivery"] = node_json(["dist/libs/kafka/src/bench/delivery-bench.js"], env)
        except (RuntimeError, ValueError) as error:
            note(f"delivery: FAILED: {error}")
            self.report["delivery"] = {"failed": str(error)}

    def predict(self, measured: dict[str, Any], who: str) -> None:
        """POST /v1/predict, one call at a time: the wait a modality sees for one image's findings."""
        ok = [k for k, v in measured.items() if "failed" not in v] or list(self.inputs)
        kind = "png512" if "png512" in ok else ok[0]
        files, content_type = self.inputs[kind], INPUT_KINDS[kind][1]
        url = f"http://127.0.0.1:{PORTS['ingest']}/v1/predict"

        def call(key: str, body: bytes) -> int:
            req = urllib.request.Request(
                f"{url}?id={key}", data=body, headers={"content-type": content_type}, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as res:
                    res.read()
                    return int(res.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        deadline = time.time() + 60  # 503 until ingest follows the findings topic
        while call(self.key(f"pw{contender_tag(who)}", kind), files[0]) == 503 and time.time() < deadline:
            time.sleep(0.5)
        n = 10 if self.a.quick else 50
        note(f"predict ({who}): {n} {kind} calls, one at a time")
        ms: list[float] = []
        for i in range(n):
            t = time.time()
            if call(self.key(f"p{contender_tag(who)}", kind, i), files[i % len(files)]) == 200:
                ms.append((time.time() - t) * 1000)
        self.report.setdefault("predict", {})[who] = {
            "input": kind,
            "sent": n,
            "answered": len(ms),
            "p50": percentile(ms, 50),
            "p95": percentile(ms, 95),
        }

    # ---------------------------------------------------------------- table
    def table(self) -> None:
        r = self.report
        ceil, stages, cont = r.get("ceilings", {}), r.get("stages", {}), r.get("contenders", {})
        cores = ceil.get("cores", os.cpu_count())
        say(f"\nThorax benchmark {self.run}: {cores} cores, brokers {BROKERS}, model {self.tiny.relative_to(ROOT)}")
        say(
            "inputs: synthetic chest-like images (tools/bench/py/bench.py), "
            + ", ".join(f"{k} = {INPUT_KINDS[k][0]} ({self.n_for(k)} keys)" for k in self.a.inputs)
        )

        def fmt(v: float | None, unit: str = "img/s") -> str:
            return "—" if v is None or math.isnan(v) else f"{v:,.1f} {unit}"

        def ratio(a: float | None, b: float | None, goal: float) -> str:
            if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
                return "—"
            return f"{a / b:.2f}× (goal ≥ {goal}{' ✓' if a / b >= goal else ' ✗'})"

        say("\n1. native decode+resize ceiling (sharp/libvips → 256² wire, all cores; DICOM: bench-decode.mjs's")
        say("   ceiling, libvips resize of the decoded samples, codec not included)")
        for kind, v in ceil.get("decode", {}).items():
            say(f"   {kind:<9} {fmt(v)}")
        for line in r.get("bench_decode", []):
            say(f"   | {line}")
        say(
            "2. raw ONNX Runtime (onnxruntime-node in process; best batch, best of 1 session x all cores and 1 x 1 per core)"
        )
        for model, v in ceil.get("ort", {}).items():
            by = "  ".join(f"{b}:{x:.0f}" for b, x in v["byBatch"].items())
            say(f"   {model:<12} {fmt(v['best'])} at batch {v['bestBatch']}   ({by})")
        floor = ceil.get("floor", {})
        if floor:
            say(
                f"2b. native floor: CPU per image, one at a time on one thread; Thorax: libs/imaging toWireImage (sharp)"
                f" + onnxruntime-node at batch {THORAX_MAX_BATCH}; consumer: its decode (OpenCV + Pillow) + onnxruntime at batch {CONSUMER_MAX_BATCH}"
            )
            for kind, f in floor.items():
                t, c = floor_totals(f)
                say(
                    f"   {kind:<9} Thorax {f['thorax_decode_ms']:.2f} + {f['thorax_ort_ms']:.2f} = {t:.2f} ms;"
                    f" consumer {f['consumer_decode_ms']:.2f} + {f['consumer_ort_ms']:.2f} = {c:.2f} ms"
                )
        say("3. each stage alone on a pre-filled topic, and its ratio to its ceiling")
        for kind, s in stages.items():
            if "failed" in s:
                say(f"   {kind:<9} FAILED: {s['failed']}")
                continue
            dec = ceil.get("decode", {}).get(kind)

            def cpu(stage: str, s: dict[str, Any] = s) -> str:
                v = s.get(f"{stage}_cpu_ms")
                return "" if v is None or math.isnan(v) else f" ({v:.1f} ms CPU/img)"

            say(
                f"   {kind:<9} ingest {fmt(s.get('ingest'))}{cpu('ingest')}; preprocess {fmt(s.get('preprocess'))}"
                f"{cpu('preprocess')}, / decode ceiling {ratio(s.get('preprocess'), dec, 0.8)}"
            )
            ort_ceil = ceil.get("ort", {})
            if "inference" in s:
                say(
                    f"   inference (committed model) {fmt(s['inference'])}{cpu('inference')}, / raw ORT "
                    f"{ratio(s['inference'], ort_ceil.get('tiny', {}).get('best'), 0.8)}"
                )
            if "results" in s:
                say(f"   results alone {fmt(s['results'], 'events/s')} ({s['results_cpu_ms']:.1f} ms CPU/event)")
            if "inference_densenet121" in s:
                say(
                    f"   inference (DenseNet-121)   {fmt(s['inference_densenet121'])}, / raw ORT "
                    f"{ratio(s['inference_densenet121'], ort_ceil.get('densenet121', {}).get('best'), 0.9)}"
                )
        rc = ceil.get("results")
        if rc:
            say(
                f"   results vs raw inserts (tools/bench/src/results-bench.ts, {rc.get('engine')}, "
                f"{rc.get('events')} events): service {fmt(rc.get('results_per_s'), 'rows/s')}, raw inserts "
                f"{fmt(rc.get('raw_inserts_per_s'), 'rows/s')}: "
                f"{ratio(rc.get('results_per_s'), rc.get('raw_inserts_per_s'), 0.8)}"
            )
        elif "ceilings" in self.a.only:
            say("   results vs raw inserts: TODO, tools/bench/src/results-bench.ts printed no JSON figure")
        if cont:
            say(
                "4-6. scripts/start.sh co-located (THORAX_TOPOLOGY=pipeline, what npm start runs: ingest+preprocess+inference"
            )
            say("     in one process, results beside it), the same services as four processes (split), and the")
            say(
                "     single-process consumer (tools/bench/py/consumer.py); first publish -> last findings event; goal ≥ 1.0"
            )
            thorax = [w for w in self.a.contenders if any(w in c for c in cont.values())]
            say(
                f"   {'input':<9} "
                + " ".join(f"{contender_name(w):>18}" for w in (*thorax, "consumer"))
                + "  "
                + "  ".join(f"{contender_name(w) + '/consumer':>22}" for w in thorax)
            )
            for kind, c in cont.items():
                if "failed" in c:
                    say(f"   {kind:<9} FAILED: {c['failed']}")
                for who in (*thorax, "consumer"):
                    if c.get(who, {}).get("errors"):
                        say(f"   !! {who} {kind}: {c[who]['errors']} error events ({', '.join(c[who]['codes'])})")

                def rate(who: str, c: dict[str, Any] = c) -> float | None:
                    return c[who]["rate"] if who in c else None

                def rel(who: str, c: dict[str, Any] = c) -> str:
                    return f"{c[f'ratio_{who}']:.2f}" if f"ratio_{who}" in c else "—"

                def cpu(who: str, c: dict[str, Any] = c) -> str:
                    return f"{c[who]['cpu_ms']:.1f} ms" if who in c and "cpu_ms" in c[who] else "—"

                say(
                    f"   {kind:<9} "
                    + " ".join(f"{fmt(rate(w)):>18}" for w in (*thorax, "consumer"))
                    + "  "
                    + "  ".join(f"{rel(w):>22}" for w in thorax)
                )
                say(
                    f"   {'  CPU/img':<9} "
                    + " ".join(f"{cpu(w):>18}" for w in (*thorax, "consumer"))
                    + "   (user+system of each contender's processes; Thorax's include results)"
                )
                f = floor.get(kind)
                measured = {w: c[w]["cpu_ms"] for w in (*thorax, "consumer") if "cpu_ms" in c.get(w, {})}
                if f and "consumer" in measured:
                    t_floor, c_floor = floor_totals(f)
                    over = ", ".join(
                        f"{contender_name(w)} {measured[w] - t_floor:.1f} ms" for w in thorax if w in measured
                    )
                    say(
                        f"     above the native floor: {over}; consumer {measured['consumer'] - c_floor:.1f} ms. Thorax with nothing"
                        f" above its floor would reach {measured['consumer'] / t_floor:.2f} of the consumer (CPU-bound)"
                    )
                for who in (*thorax, "consumer"):
                    by = c.get(who, {}).get("threads_cpu_ms")
                    if by:
                        top = ", ".join(f"{k} {v:.1f}" for k, v in list(by.items())[:8])
                        say(f"     {contender_name(who)} CPU ms/img by thread: {top}")
                brokers = {w: c[w]["broker_cpu_ms"] for w in (*thorax, "consumer") if c.get(w, {}).get("broker_cpu_ms")}
                if brokers:
                    say(
                        "     the broker's CPU ms/img during each run (its JIT compiler's part in brackets; the same"
                        " two cores): "
                        + ", ".join(
                            f"{contender_name(w)} {b['total']:.1f} ({b['jit']:.1f})" for w, b in brokers.items()
                        )
                    )
                    for w, b in brokers.items():
                        kinds = sorted(
                            ((k, v) for k, v in b.items() if k != "total" and v >= 0.05), key=lambda kv: -kv[1]
                        )
                        say(
                            f"       broker by thread during {contender_name(w)}: "
                            + ", ".join(f"{k} {v:.1f}" for k, v in kinds)
                        )
        for who, lat in r.get("latency", {}).items():
            say(
                f"7. {contender_name(who)} latency, publish -> findings, {lat['input']} at {lat['rate']:.1f} img/s "
                f"({'as asked' if lat.get('rate_fixed') else 'half its capacity'}), "
                f"{lat['answered']}/{lat['sent']} answered: p50 {lat['p50']:.0f} ms, "
                f"p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms (goal p99 ≤ 300 ms"
                f"{' ✓' if lat['p99'] <= 300 else ' ✗'}), max {lat.get('max', float('nan')):.0f} ms"
            )
        for who, pr in r.get("predict", {}).items():
            say(
                f"8. {contender_name(who)} POST /v1/predict, {pr['input']}, one call at a time, "
                f"{pr['answered']}/{pr['sent']} answered 200: p50 {pr['p50']:.0f} ms, p95 {pr['p95']:.0f} ms"
            )
        if "delivery" in r:
            d = r["delivery"]
            if "failed" in d:
                say(f"9. exactly-once vs at-least-once: FAILED: {d['failed']}")
            else:
                say(
                    f"9. exactly-once vs at-least-once, one stage through the consumer port, {d['records']} records of "
                    f"{d['bytes']} B: {d['exactly_once_per_s']:,.0f} vs {d['at_least_once_per_s']:,.0f} records/s, "
                    f"ratio {d['ratio']:.2f} (delivery-bench.ts; rounds alternate)"
                )
        path = self.dir / "report.json"
        path.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        say(f"written {path.relative_to(ROOT)}")


PARTS = ("ceilings", "stages", "pipeline", "latency", "predict", "delivery")
TOPOLOGY_NAMES = {"pipeline": "co-located", "split": "split"}
KAFKA_CLIENTS = ("kafkajs", "librdkafka")


def contender_parts(who: str) -> tuple[str, str | None]:
    """`pipeline` or `pipeline@librdkafka`: the THORAX_TOPOLOGY and the KAFKA_CLIENT (None: the default)."""
    topology, _, client = who.partition("@")
    return topology, client or None


def contender_tag(who: str) -> str:
    """A short tag for the contender's keys (distinct per contender in one run)."""
    topology, client = contender_parts(who)
    return topology[0] + (client[0] if client else "")


def contender_name(who: str) -> str:
    topology, client = contender_parts(who)
    return TOPOLOGY_NAMES.get(topology, topology) + (f" ({client})" if client else "")


def main() -> None:
    ap = argparse.ArgumentParser(description="Thorax against its ceilings and a plain consumer (issue 11).")
    ap.add_argument("--quick", action="store_true", help="small N (a smoke run of a minute or two)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    ap.add_argument("--inputs", default=None, help=f"comma-separated inputs of {tuple(INPUT_KINDS)}")
    ap.add_argument("--n", type=int, default=None, help="distinct keys per PNG input (default 1500)")
    ap.add_argument("--dicom-n", type=int, default=None, help="distinct keys per DICOM input (default 150)")
    ap.add_argument("--densenet-n", type=int, default=None, help="images for DenseNet-121 served alone (600)")
    ap.add_argument("--pool", type=int, default=4, help="distinct files per input (cycled over the keys)")
    ap.add_argument("--latency-seconds", type=float, default=None)
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="img/s of the latency part (default: half of each topology's measured capacity)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed records before each contender's first timed run, to warm it and the broker (default 1500)",
    )
    ap.add_argument(
        "--topologies",
        default="pipeline,split",
        help="scripts/start.sh topologies for pipeline/latency/predict: pipeline (co-located), split",
    )
    ap.add_argument(
        "--kafka-clients",
        default=None,
        help=f"KAFKA_CLIENT of each topology, side by side ({', '.join(KAFKA_CLIENTS)}; default: the services' default)",
    )
    a = ap.parse_args()
    a.only = [p.strip() for p in a.only.split(",") if p.strip()]
    a.topologies = [t.strip() for t in a.topologies.split(",") if t.strip()]
    if not a.topologies or any(t not in TOPOLOGY_NAMES for t in a.topologies):
        ap.error(f"--topologies takes {tuple(TOPOLOGY_NAMES)}")
    clients = [c.strip() for c in (a.kafka_clients or "").split(",") if c.strip()]
    if any(c not in KAFKA_CLIENTS for c in clients):
        ap.error(f"--kafka-clients takes {KAFKA_CLIENTS}")
    # Contenders: `pipeline`, or `pipeline@librdkafka` when clients are named (scripts/rdkafka.sh builds it).
    a.contenders = [f"{t}@{c}" for t in a.topologies for c in clients] if clients else list(a.topologies)
    unknown = [p for p in a.only if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; parts are {PARTS}")
    default_inputs = "png512,png1024" if a.quick else ",".join(INPUT_KINDS)
    a.inputs = [k.strip() for k in (a.inputs or default_inputs).split(",") if k.strip()]
    bad = [k for k in a.inputs if k not in INPUT_KINDS]
    if bad:
        ap.error(f"unknown input(s) {bad}; inputs are {tuple(INPUT_KINDS)}")
    a.n = a.n or (150 if a.quick else 1500)
    a.dicom_n = a.dicom_n or (20 if a.quick else 150)
    a.densenet_n = a.densenet_n or (40 if a.quick else 600)
    a.latency_seconds = a.latency_seconds or (5 if a.quick else 20)
    a.warmup = a.warmup if a.warmup is not None else (50 if a.quick else 1500)
    a.warmup = max(4, a.warmup)
    if a.quick:
        a.pool = min(a.pool, 2)
    bench = Bench(a)
    try:
        if "ceilings" in a.only:
            bench.ceilings()
        if "stages" in a.only:
            bench.stages()
        if {"pipeline", "latency", "predict"} & set(a.only):  # latency needs the pipeline's capacity first
            bench.contenders()
        if "delivery" in a.only:
            bench.delivery()
    finally:
        bench.table()


if __name__ == "__main__":
    main()
