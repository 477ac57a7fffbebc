"""How the file datasets read images (xattr.data.transforms.load_rgb): 16-bit and float files as floats (not
clipped by ``convert("RGB")``), grey to 3 channels, alpha dropped, and every defect of a file -- NaN/inf,
float values outside [0,1], 32-bit integers, a header claiming 40000x40000 pixels (Pillow's
``DecompressionBombError`` is no ``OSError``), a truncated file -- one line naming the file, also through
``xattr run dataset=folder`` (exit 2, nothing complete on disk). The ids are rows of docs/reliability.md."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import error_lines

from xattr.cli import main
from xattr.data import FolderDataset
from xattr.data.transforms import load_rgb, resize_center_crop
from xattr.errors import XattrError


def grey16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit grey PNG (Pillow mode ``I;16``)."""
    Image.fromarray(array.astype(np.uint16)).save(path)
    return path


def float_tiff(path: Path, array: np.ndarray) -> Path:
    """A float32 grey TIFF (Pillow mode ``F``)."""
    Image.fromarray(array.astype(np.float32)).save(path)
    return path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` (8-bit grey) with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def ramp(height: int = 16, width: int = 16) -> np.ndarray:
    return np.linspace(0.0, 1.0, height * width, dtype=np.float64).reshape(height, width)


def test_16_bit_png_is_scaled_by_65535_not_clipped(tmp_path):
    values = (ramp() * 65535).round()
    image = load_rgb(grey16(tmp_path / "a.png", values))
    tensor, _ = resize_center_crop(image, 16, crop_fraction=1.0)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    expected = torch.from_numpy(values / 65535).float()
    for channel in tensor:  # grey -> the same values in all three channels
        torch.testing.assert_close(channel, expected, atol=1e-6, rtol=0)
    assert float(tensor.max()) == pytest.approx(1.0) and 0.2 < float(tensor.mean()) < 0.8  # not white


def test_float_tiff_is_read_as_floats(tmp_path):
    values = ramp() * 0.5 + 0.25
    tensor, _ = resize_center_crop(load_rgb(float_tiff(tmp_path / "a.tif", values)), 16, crop_fraction=1.0)
    torch.testing.assert_close(tensor, torch.from_numpy(values).float().expand(3, -1, -1), atol=1e-6, rtol=0)


def test_float_image_resizes_like_pillow_and_stays_in_range(tmp_path):
    values = ramp(40, 24)
    tensor, geometry = resize_center_crop(load_rgb(float_tiff(tmp_path / "a.tif", values)), 16)
    assert tensor.shape == (3, 16, 16) and 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    reference = Image.fromarray(values.astype(np.float32)).resize((geometry.scaled_width, geometry.scaled_height),
                                                                   Image.BILINEAR)
    reference = np.asarray(reference)[geometry.top:geometry.top + 16, geometry.left:geometry.left + 16]
    np.testing.assert_allclose(tensor[0].numpy(), reference, atol=1e-6)


def test_8_bit_files_keep_their_values_and_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    tensor, _ = resize_center_crop(load_rgb(tmp_path / "a.png"), 8, crop_fraction=1.0)
    torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([200, 100, 50]) / 255.0)  # colour kept, alpha dropped
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(tmp_path / "g.png")
    grey, _ = resize_center_crop(load_rgb(tmp_path / "g.png"), 8, crop_fraction=1.0)
    assert grey.shape == (3, 8, 8) and torch.allclose(grey, torch.full_like(grey, 128 / 255))


def nan_tiff(path: Path) -> Path:
    values = ramp()
    values[3, 4] = np.nan
    return float_tiff(path, values)


def inf_tiff(path: Path) -> Path:
    values = ramp()
    values[0, 0] = np.inf
    return float_tiff(path, values)


def minus_inf_tiff(path: Path) -> Path:
    values = ramp()
    values[0, 0] = -np.inf
    return float_tiff(path, values)


def big_float_tiff(path: Path) -> Path:
    return float_tiff(path, ramp() * 255)


def negative_float_tiff(path: Path) -> Path:
    return float_tiff(path, ramp() - 0.5)


def int32_tiff(path: Path) -> Path:
    Image.fromarray((ramp() * 1e6).astype(np.int32)).save(path)
    return path


def bomb_png(path: Path) -> Path:
    return png_header(path, 40000, 40000)


def truncated_png(path: Path) -> Path:
    Image.fromarray((ramp() * 255).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


def not_an_image(path: Path) -> Path:
    path.write_bytes(b"this is text, not a PNG")
    return path


# id: (file writer, file name, text the one error line contains)
BAD_FILES = {
    "float-nan": (nan_tiff, "bad.tif", "contains NaN or inf values (1 pixels)"),
    "float-inf": (inf_tiff, "bad.tif", "contains NaN or inf values"),
    "float-minus-inf": (minus_inf_tiff, "bad.tif", "contains NaN or inf values"),
    "float-above-1": (big_float_tiff, "bad.tif", "holds float values in [0, 255], not [0,1]"),
    "float-negative": (negative_float_tiff, "bad.tif", "holds float values in [-0.5, 0.5], not [0,1]"),
    "int32-beyond-16-bit": (int32_tiff, "bad.tif", "32-bit integer image with values beyond [0, 65535]"),
    "decompression-bomb": (bomb_png, "bad.png", "is too large to decode safely"),
    "truncated": (truncated_png, "bad.png", "cannot read image"),
    "not-an-image": (not_an_image, "bad.png", "cannot read image"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_image_file_is_one_line_naming_the_file(case, tmp_path):
    write, name, expected = BAD_FILES[case]
    root = tmp_path / "folder"
    (root / "cls").mkdir(parents=True)
    path = write(root / "cls" / name)
    dataset = FolderDataset(root, image_size=16)
    with pytest.raises(XattrError) as error:
        dataset[0]
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message, message


def test_bomb_message_says_how_to_proceed(tmp_path):
    with pytest.raises(XattrError, match=r"downscale the file .* or remove it"):
        load_rgb(bomb_png(tmp_path / "big.png"))


@pytest.mark.parametrize("case", ["float-nan", "float-inf", "decompression-bomb"])
def test_bad_image_file_through_the_cli(case, tmp_path, checkpoint, capsys):
    """``xattr run dataset=folder`` on a folder with one bad file next to a good one: exit 2, one line naming
    the file, and no complete-looking folder."""
    write, name, expected = BAD_FILES[case]
    root = tmp_path / "data" / "folder"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(root / "a" / "good.png")
    path = write(root / "a" / f"z{name}")
    run_dir = tmp_path / "run"
    args = ["run", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25", "dataset=folder",
            "dataset.image_size=64", "model.num_classes=6", "batch_size=2", f"model.checkpoint={checkpoint}",
            f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data", f"paths.cache_dir={tmp_path}/cache",
            f"hydra.run.dir={run_dir}"]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0] and str(path) in lines[0], lines
    assert not (run_dir / "DONE").exists() and not (run_dir / "summary.csv").exists()
    if (run_dir / "status.json").exists():
        assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
