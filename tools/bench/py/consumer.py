"""A plain single-process consumer: the yardstick `npm run bench` holds Thorax against (issue 11).

One process does the whole job that Thorax spreads over four services: read raw files from a
studies topic, decode and resize them to the 256x256 8-bit wire image (shorter side 256 with
Lanczos-3, centre crop; docs/contract.md), classify micro-batches of up to 16 with ONNX Runtime,
and publish one JSON findings event per record. Offsets are committed only after the record's
event is acknowledged by Kafka (at least once). It does less than Thorax on purpose: no schema
validation, DLQ, tracing, metrics, clinical gates or claim-check; that is the comparison.

Decoding: OpenCV for PNG/JPEG, pydicom with pylibjpeg (libjpeg, OpenJPEG) for DICOM, on
`--decode-threads` threads (the codecs and Pillow release the GIL); the resize is Pillow's.
Runs until SIGTERM/SIGINT, then drains, commits and exits.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pydicom
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from PIL import Image

WIRE = 256
# The fastest decoder each syntax has here (measured: pydicom's defaults are 2-3x slower):
# OpenJPEG through pylibjpeg for JPEG 2000, CharLS (pyjpegls) for JPEG-LS.
PLUGINS = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
}


def geometry(w: int, h: int) -> tuple[int, int, int, int]:
    """Resized size and crop origin: shorter side to 256, rounded half up as Thorax's Math.round."""
    scale = WIRE / min(w, h)
    nw, nh = max(WIRE, int(w * scale + 0.5)), max(WIRE, int(h * scale + 0.5))
    return nw, nh, (nw - WIRE) // 2, (nh - WIRE) // 2


def to_wire(plane: Image.Image) -> np.ndarray:
    """Shorter side to 256 with Lanczos-3, then the centred 256x256 square, as uint8."""
    nw, nh, left, top = geometry(*plane.size)
    resized = plane.resize((nw, nh), Image.Resampling.LANCZOS)
    out = np.asarray(resized.crop((left, top, left + WIRE, top + WIRE)))
    if out.dtype != np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


def decode_raster(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("CORRUPT_IMAGE")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint16:
        return to_wire(Image.fromarray(img.astype(np.float32) * (255.0 / 65535.0), mode="F"))
    return to_wire(Image.fromarray(img, mode="L"))


def decode_dicom(data: bytes) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    plugin = PLUGINS.get(ds.file_meta.TransferSyntaxUID)
    if plugin:
        ds.pixel_array_options(decoding_plugin=plugin)
    px = ds.pixel_array.astype(np.float32)
    px = px * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    else:
        lo, hi = float(px.min()), float(px.max())
    px = np.clip((px - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        px = 255.0 - px
    return to_wire(Image.fromarray(px, mode="F"))


def decode(data: bytes) -> np.ndarray:
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:2] == b"\xff\xd8":
        return decode_raster(data)
    return decode_dicom(data)


class Offsets:
    """Input offsets in consume order per partition; commits the contiguous acknowledged prefix."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.pending: dict[int, deque[list[Any]]] = {}

    def add(self, partition: int, offset: int) -> list[Any]:
        entry = [offset, False]
        self.pending.setdefault(partition, deque()).append(entry)
        return entry

    def committable(self) -> list[TopicPartition]:
        out = []
        for partition, entries in self.pending.items():
            last = None
            while entries and entries[0][1]:
                last = entries.popleft()[0]
            if last is not None:
                out.append(TopicPartition(self.topic, partition, last + 1))
        return out

    def outstanding(self) -> int:
        return sum(len(e) for e in self.pending.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--model", required=True, help="model.onnx (Thorax model contract)")
    ap.add_argument("--decode-threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=16)
    a = ap.parse_args()

    options = ort.SessionOptions()
    # Idle ORT threads would spin on the cores the decode threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    labels: list[str] = json.loads(props["thorax.labels"])
    thresholds: list[float] = json.loads(props["thorax.thresholds"])
    model = {"name": props.get("thorax.model.name"), "version": props.get("thorax.model.version")}
    input_name = session.get_inputs()[0].name

    consumer = Consumer(
        {
            "bootstrap.servers": a.brokers,
            "group.id": a.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": a.brokers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "none",
        }
    )
    consumer.subscribe([a.input])
    offsets = Offsets(a.input)
    pool = ThreadPoolExecutor(a.decode_threads)
    queue: deque[tuple[Any, list[Any], float, Future[np.ndarray]]] = deque()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def acked(entry: list[Any]) -> Any:
        def callback(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                entry[1] = True
            else:  # not acknowledged: stop without committing it, so it is redelivered
                raise SystemExit(f"findings event not acknowledged: {err}")

        return callback

    def publish(msg: Any, entry: list[Any], received: float, event: dict[str, Any]) -> None:
        now = time.time()
        event["timing"] = {"receivedAt": received, "completedAt": now, "latencyMs": round((now - received) * 1000)}
        producer.produce(a.output, json.dumps(event).encode(), key=msg.key(), on_delivery=acked(entry))

    last_commit = time.monotonic()
    while not (stopping and not queue):
        if not stopping and len(queue) < 4 * a.max_batch:
            for msg in consumer.consume(num_messages=4 * a.max_batch, timeout=0.005 if queue else 0.1):
                if msg.error():
                    continue
                entry = offsets.add(msg.partition(), msg.offset())
                queue.append((msg, entry, time.time(), pool.submit(decode, msg.value() or b"")))
        if queue and not queue[0][3].done():
            wait([queue[0][3]], timeout=0.05)  # the oldest decode
        batch = []
        while queue and queue[0][3].done() and len(batch) < a.max_batch:
            batch.append(queue.popleft())
        good = [b for b in batch if b[3].exception() is None]
        if good:
            pixels = np.stack([b[3].result() for b in good])[:, None, :, :]
            probs = session.run(None, {input_name: pixels})[0]
            for (msg, entry, received, _), p in zip(good, probs, strict=True):
                findings = [
                    {"label": lab, "probability": float(v), "threshold": t, "positive": bool(v >= t)}
                    for lab, v, t in zip(labels, p, thresholds, strict=True)
                ]
                event = {"schema": "thorax.findings.v1", "id": (msg.key() or b"").decode(), "status": "ok"}
                event.update(model=model, findings=findings, positives=[f["label"] for f in findings if f["positive"]])
                publish(msg, entry, received, event | {"error": None})
        for msg, entry, received, fut in batch:
            if fut.exception() is not None:
                error = {"code": "CORRUPT_IMAGE", "stage": "consumer", "message": str(fut.exception())[:200]}
                event = {"schema": "thorax.findings.v1", "id": (msg.key() or b"").decode(), "status": "error"}
                publish(msg, entry, received, event | {"findings": [], "positives": [], "error": error})
        producer.poll(0)
        if time.monotonic() - last_commit > 0.1:
            done = offsets.committable()
            if done:
                consumer.commit(offsets=done, asynchronous=True)
            last_commit = time.monotonic()
    producer.flush(30)
    done = offsets.committable()
    if done:
        consumer.commit(offsets=done, asynchronous=False)
    consumer.close()
    pool.shutdown()


if __name__ == "__main__":
    main()
