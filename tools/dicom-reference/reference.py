"""Reference decode of DICOM files with pydicom + pylibjpeg, for comparison with libs/imaging.

    python reference.py OUT FILE...

For each FILE (numbered n from 0) the first frame is decoded and written to OUT/<n>.f32
(little-endian float32, rows x columns) as the comparison plane:

  monochrome: the stored values (masked to Bits Stored, sign-extended), before any LUT;
  colour:     luma (299 R + 587 G + 114 B) / 1000 of the RGB pydicom returns (YBR converted,
              PALETTE COLOR through its lookup tables), scaled to 0..255; uncompressed and RLE
              YBR_FULL / YBR_FULL_422: the Y plane (converting to RGB would clip).

OUT/results.json lists per file: outcome "ok" or "refused" (with pydicom's error), kind, size.
A file that pydicom refuses is a result, not a failure; the process fails only on its own bugs.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import RLELossless

MAX_PIXELS = 50_000_000


def reference(path: Path) -> tuple[dict[str, Any], np.ndarray | None]:
    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds:
            return {"outcome": "refused", "error": "no Pixel Data"}, None
        rows, cols = int(ds.Rows), int(ds.Columns)
        if rows * cols * int(ds.get("NumberOfFrames", 1) or 1) > MAX_PIXELS:
            return {"outcome": "refused", "error": "larger than this comparison decodes"}, None
        pi = str(ds.PhotometricInterpretation).strip().upper()
        ts = ds.file_meta.get("TransferSyntaxUID")
        keep_ybr = (
            pi in ("YBR_FULL", "YBR_FULL_422")
            and ts is not None
            and (not ts.is_compressed or ts == RLELossless)
        )
        arr = pixel_array(ds, index=0, as_rgb=not keep_ybr)
        if keep_ybr:
            plane = arr[..., 0].astype(np.float64) * (255 / (2 ** int(ds.BitsStored) - 1))
            kind = "colour"
        elif pi in ("MONOCHROME1", "MONOCHROME2"):
            plane = arr.astype(np.float64)
            kind = "monochrome"
        else:
            if pi == "PALETTE COLOR":
                rgb = apply_color_lut(arr, ds).astype(np.float64)
                top = 2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1
            else:
                rgb = arr.astype(np.float64)
                top = 2 ** int(ds.BitsStored) - 1
            plane = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2]) / 1000 * (255 / top)
            kind = "colour"
        if plane.shape != (rows, cols):
            return {"outcome": "refused", "error": f"first frame has shape {plane.shape}"}, None
        return {
            "outcome": "ok",
            "kind": kind,
            "rows": rows,
            "columns": cols,
            "photometric": pi,
            "bitsStored": int(ds.BitsStored),
            "transferSyntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        }, plane
    except Exception as error:  # every pydicom refusal is a reported outcome
        return {"outcome": "refused", "error": f"{type(error).__name__}: {str(error)[:200]}"}, None


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n, name in enumerate(sys.argv[2:]):
        with warnings.catch_warnings():
            # pydicom warns about the oddities of its own test files; the outcome is the report.
            warnings.simplefilter("ignore")
            result, plane = reference(Path(name))
        if plane is not None:
            plane.astype("<f4").tofile(out / f"{n}.f32")
        results.append({"file": name, **result})
    (out / "results.json").write_text(
        json.dumps({"pydicom": pydicom.__version__, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
