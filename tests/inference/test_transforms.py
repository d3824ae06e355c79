import numpy as np
import pytest
import torch
from pydicom.uid import RLELossless

from inference.transforms import prepare
from testkit import synthetic
from triage.header_facts import HeaderFacts
from triage.imaging import UnreadableImage, check_decoded_size, read_image


def read_dicom(path):
    image = read_image(path)
    return image.pixels, image.facts


def write(ds, tmp_path):
    [path] = synthetic.write([ds], tmp_path)
    return path


def test_monochrome1_is_inverted_so_dense_is_bright(tmp_path):
    ds = synthetic.dx(bits=12)
    plain, _ = read_dicom(write(ds, tmp_path / "a"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted, meta = read_dicom(write(ds, tmp_path / "b"))
    assert meta.photometric_interpretation == "MONOCHROME1"
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-6)


def test_window_is_applied(tmp_path):
    ds = synthetic.dx(bits=12)
    ds.WindowCenter, ds.WindowWidth = 1024, 512  # a narrow window saturates most of the 0-4095 ramp
    pixels, _ = read_dicom(write(ds, tmp_path))
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    assert (pixels == 1.0).mean() > 0.5


def test_rescale_slope_is_applied_before_the_window(tmp_path):
    ds = synthetic.dx(bits=12)
    del ds.WindowCenter, ds.WindowWidth
    base, _ = read_dicom(write(ds, tmp_path / "a"))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000  # a linear modality LUT: same image after windowing
    scaled, _ = read_dicom(write(ds, tmp_path / "b"))
    np.testing.assert_allclose(scaled, base, atol=1e-3)


def test_constant_image_is_unreadable(tmp_path):
    ds = synthetic.dx()
    ds.PixelData = np.full((64, 64), 7, dtype=np.uint16).tobytes()
    del ds.WindowCenter, ds.WindowWidth
    with pytest.raises(UnreadableImage, match="no usable range"):
        read_dicom(write(ds, tmp_path))


def test_truncated_pixel_data_is_unreadable(tmp_path):
    ds = synthetic.dx()
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(UnreadableImage, match="cannot be decoded"):
        read_dicom(write(ds, tmp_path))


def test_anisotropic_pixels_are_made_square_in_millimetres():
    pixels = np.zeros((100, 100), dtype=np.float32)
    meta = HeaderFacts(pixel_spacing_mm=(0.2, 0.1))  # rows twice as far apart: 20 mm tall, 10 mm wide
    prepared = prepare(pixels, meta, 64)
    assert prepared.scale_rows == pytest.approx(100 / 64)
    assert prepared.scale_columns == pytest.approx(100 / 32)


def test_right_breast_is_mirrored_and_boxes_map_back():
    pixels = np.zeros((200, 100), dtype=np.float32)
    pixels[:, 90:] = 1.0  # chest wall on the right, as a right breast is stored
    meta = HeaderFacts(modality="MG", laterality="R", row_direction="P")
    prepared = prepare(pixels, meta, 100)
    assert prepared.mirrored
    columns = prepared.pixels[0].sum(dim=0)
    assert torch.argmax(columns) < 50, "the chest wall now lies on the left"
    box = (10.0, 20.0, 30.0, 60.0)
    np.testing.assert_allclose(prepared.box_to_source(prepared.box_from_source(box)), box, atol=1e-6)


def test_left_breast_is_not_mirrored():
    prepared = prepare(
        np.zeros((50, 50), dtype=np.float32),
        HeaderFacts(modality="MG", laterality="L", row_direction="A"),
        64,
    )
    assert not prepared.mirrored


def test_views_come_from_dicom_tags_not_file_names(tmp_path):
    ds = synthetic.mg(laterality="R", view="MLO")
    ds.ViewPosition = ""
    _, meta = read_dicom(write(ds, tmp_path))
    assert (meta.laterality, meta.view, meta.row_direction) == ("R", "MLO", "P")


@pytest.mark.parametrize("with_window", [True, False])
def test_fast_linear_window_matches_pydicom(tmp_path, with_window):
    from pydicom import dcmread
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    from triage.imaging import window

    ds = synthetic.dx(bits=12, rows=256, columns=200)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 3000, 2000
    if not with_window:
        del ds.WindowCenter, ds.WindowWidth
    d = dcmread(write(ds, tmp_path))
    stored = d.pixel_array
    values = apply_modality_lut(stored, d).astype(np.float32)
    if with_window:
        reference = apply_voi_lut(values, d, index=0).astype(np.float32)
        reference = (reference - reference.min()) / (reference.max() - reference.min())
    else:
        low, high = np.percentile(values, (0.5, 99.5))
        reference = np.clip((values - low) / (high - low), 0, 1)
    np.testing.assert_allclose(window(d, stored), reference, atol=2e-3)


def test_sigmoid_voi_function_takes_pydicoms_general_path(tmp_path):
    from pydicom import dcmread

    from triage.imaging import window

    ds = synthetic.dx(bits=12)
    ds.VOILUTFunction = "SIGMOID"
    d = dcmread(write(ds, tmp_path))
    pixels = window(d, d.pixel_array)
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0 and 0.3 < pixels.mean() < 0.7


def pixel_bomb(tmp_path, **header):
    """A small RLE object whose header announces far more pixels than it carries."""
    ds = synthetic.dx(rows=64, columns=64)
    ds.compress(RLELossless)
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    path = write(ds, tmp_path)
    assert path.stat().st_size < 64 << 10
    return path


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    """20000 x 20000 at 16 bits would decode to 762 MiB: refused without a decoder being called."""
    import pydicom.dataset

    def no_decoding(self):
        raise AssertionError("the pixel data was decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with pytest.raises(UnreadableImage, match=r"would decode to 762 MiB .* more than the 64 MiB"):
        read_image(pixel_bomb(tmp_path, Rows=20000, Columns=20000))


def test_a_multi_frame_image_is_refused_before_its_frames_decode(tmp_path):
    with pytest.raises(UnreadableImage, match="expected one 2-D frame, the header announces 40 frames"):
        read_image(pixel_bomb(tmp_path, NumberOfFrames=40))


def test_an_image_at_the_decoded_limit_still_reads(tmp_path):
    ds = synthetic.dx(rows=64, columns=64)
    [path] = synthetic.write([ds], tmp_path)
    check_decoded_size(read_image(path).dataset, limit=64 * 64 * 2)
    with pytest.raises(UnreadableImage, match="would decode"):
        check_decoded_size(read_image(path).dataset, limit=64 * 64 * 2 - 1)
