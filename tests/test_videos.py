from __future__ import annotations

import shutil
import subprocess
import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image

from core.data.videos import (
    VideoClip,
    clip_starts,
    clips_from,
    count_frames,
    demo_videos,
    natural_key,
    preprocess_clips,
    preprocess_video,
    read_frame_folder,
    read_video,
    write_video,
)
from core.errors import DataError
from core.models import Preprocessing


def pattern(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """``n`` frames: red = 6 * frame index (so a frame's index can be read back), left half green."""
    a = np.zeros((n, h, w, 3), np.uint8)
    a[..., 0] = (np.arange(n) * 6 % 256).astype(np.uint8)[:, None, None]
    a[:, :, : w // 2, 1] = 200
    return a


def encode(path, frames: np.ndarray, codec: str = "ffv1", pix_fmt: str = "bgr0", rate: int = 10):
    """Write ``frames`` with PyAV (ffv1 + bgr0 is lossless RGB: exact frame contents)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = pix_fmt
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


def indices(clip: VideoClip) -> list[int]:
    """Source frame indices of a clip made from :func:`pattern` frames."""
    return [round(v / 6) for v in clip.frames[:, 0, 0, 0].astype(int)]


@pytest.mark.parametrize(("name", "codec", "pix_fmt"), [
    ("h264.mp4", "libx264", "yuv420p"),
    ("mjpeg.avi", "mjpeg", "yuvj420p"),
    ("ffv1.avi", "ffv1", "bgr0"),
    ("mpeg4.avi", "mpeg4", "yuv420p"),
    ("vp8.webm", "libvpx", "yuv420p"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
    ("ffv1.mkv", "ffv1", "yuv444p"),
])
def test_formats_decode(tmp_path, name, codec, pix_fmt):
    src = pattern(12)
    frames, fps = read_video(encode(tmp_path / name, src, codec, pix_fmt))
    assert frames.shape == (12, 48, 64, 3) and frames.dtype == np.uint8
    assert fps == 10.0
    assert np.abs(frames.astype(int) - src).mean() < 4  # lossy codecs: close, not exact
    red = frames[..., 0].mean(axis=(1, 2))  # 6 * frame index, blurred by low-bitrate codecs
    assert (np.diff(red) > 0).all() and np.abs(red - 6 * np.arange(12)).max() < 8
    assert read_video(tmp_path / name, max_frames=5)[0].shape == (5, 48, 64, 3)
    assert count_frames(tmp_path / name) == 12


def test_animated_gif(tmp_path):
    frames = [Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)) for i in range(5)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    video, fps = read_video(tmp_path / "a.gif")
    assert video.shape == (5, 20, 30, 3) and fps == 10.0
    assert video[:, 5, 5, 0].tolist() == [0, 40, 80, 120, 160]


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 20, "random", "headless"])
def test_corrupt_files_raise_data_error_naming_them(tmp_path, content):
    good = encode(tmp_path / "good.mp4", pattern(8), "libx264", "yuv420p").read_bytes()
    if content == "random":
        content = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    elif content == "headless":
        content = good[:200]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"broken\.mp4"):
        read_video(bad)
    with pytest.raises(DataError, match="not found"):
        read_video(tmp_path / "missing.avi")


def test_truncated_file_gives_its_frames_with_a_warning(tmp_path):
    full = write_video(tmp_path / "full.mp4", np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), np.uint8), 10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.5)])  # faststart: index first
    with pytest.warns(UserWarning, match="truncated"):
        frames, _ = read_video(cut)
    assert 0 < len(frames) < 20


def test_bad_files_are_skipped_and_all_bad_is_an_error(tmp_path):
    encode(tmp_path / "ok.avi", pattern(16))
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    with pytest.warns(UserWarning, match=r"corrupt\.mp4"):
        clips = clips_from(tmp_path, frames=8)
    assert [c.id for c in clips] == ["ok@0", "ok@8"]
    with pytest.raises(DataError, match=r"corrupt\.mp4"):
        clips_from(tmp_path, frames=8, skip_bad=False)
    bad = tmp_path / "allbad"
    bad.mkdir()
    (bad / "a.webm").write_bytes(b"nope")
    (bad / "b.avi").write_bytes(b"")
    with pytest.warns(UserWarning) as caught, pytest.raises(DataError, match="no usable video clip"):
        clips_from(bad)
    said = " ".join(str(w.message) for w in caught)
    assert "a.webm" in said and "b.avi" in said
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no usable video clip"):
        clips_from(empty)
    with pytest.raises(DataError, match="not found"):
        clips_from(tmp_path / "nowhere")


def test_labels_from_sub_folders_and_natural_order(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
    encode(tmp_path / "cat" / "v10.avi", pattern(8))
    encode(tmp_path / "cat" / "v2.mp4", pattern(8), "libx264", "yuv420p")
    frames = tmp_path / "dog" / "clip1"
    frames.mkdir()
    for i, f in enumerate(pattern(8)):
        Image.fromarray(f).save(frames / f"{i}.png")
    encode(tmp_path / "top.mkv", pattern(8))
    clips = clips_from(tmp_path, frames=8)
    assert [(c.id, c.label) for c in clips] == [
        ("cat__v2@0", "cat"), ("cat__v10@0", "cat"), ("dog__clip1@0", "dog"), ("top@0", None)]
    assert clips[2].fps is None and clips[0].fps == 10.0
    assert indices(clips[2]) == list(range(8))
    assert [c.id for c in clips_from(tmp_path, frames=8)] == [c.id for c in clips]  # deterministic


def test_clip_cutting_counts_strides_and_steps(tmp_path):
    video = encode(tmp_path / "v.avi", pattern(40))
    clips = clips_from(video, frames=16, stride=8)
    assert [c.start for c in clips] == [0, 8, 16, 24]
    assert all(c.frames.shape == (16, 48, 64, 3) for c in clips)
    assert indices(clips[3]) == list(range(24, 40))
    assert clips[1].id == "v@8" and clips[1].source == str(video) and clips[1].label is None
    assert [c.start for c in clips_from(video, frames=16)] == [0, 16]  # back to back, tail dropped
    stepped = clips_from(video, frames=8, frame_step=2)  # spans 15 frames, default stride 16
    assert [c.start for c in stepped] == [0, 16]
    assert indices(stepped[1]) == list(range(16, 31, 2))
    spread = clips_from(video, frames=4, max_clips_per_video=3)  # 10 candidates 0, 4, ..., 36
    assert [c.start for c in spread] == [0, 16, 36]  # candidates 0, 4 (4.5 rounds to even), 9
    assert indices(spread[2]) == [36, 37, 38, 39]
    assert clip_starts(250, 16, max_clips=3) == [0, 112, 224]
    assert clip_starts(40, 16, stride=8) == [0, 8, 16, 24]
    with pytest.raises(DataError, match="frames must be"):
        clips_from(video, frames=0)


def test_short_videos_are_padded_or_skipped(tmp_path):
    short = encode(tmp_path / "short.avi", pattern(10))
    clip = clips_from(short, frames=16)[0]
    assert indices(clip) == [*range(10), 9, 9, 9, 9, 9, 9]
    assert indices(clips_from(short, frames=8, frame_step=2)[0]) == [0, 2, 4, 6, 8, 8, 8, 8]
    tiny = encode(tmp_path / "tiny.avi", pattern(7))
    with pytest.warns(UserWarning, match=r"tiny\.avi"), pytest.raises(DataError):
        clips_from(tiny, frames=16)
    with pytest.warns(UserWarning, match=r"tiny\.avi"):
        assert [c.id for c in clips_from(tmp_path, frames=16)] == ["short@0"]


def test_frame_folder_natural_order_and_modes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    src = pattern(12, 8, 10)
    for i in range(12):  # written out of order; frame_2 must come before frame_10
        Image.fromarray(src[i]).save(folder / f"frame_{i}.png")
    Image.fromarray(src[3, :, :, 0]).save(folder / "frame_3.png")  # a grey frame
    Image.fromarray(np.dstack([src[4], np.full((8, 10), 255, np.uint8)])).save(folder / "frame_4.png")  # RGBA
    (folder / "notes.txt").write_text("ignored")
    video = read_frame_folder(folder)
    assert video.shape == (12, 8, 10, 3)
    assert [round(v / 6) for v in video[:, 0, 0, 0].astype(int)] == list(range(12))
    assert (video[3, ..., 1] == video[3, ..., 0]).all()
    assert sorted(["frame_10", "frame_2", "frame_1"], key=natural_key) == ["frame_1", "frame_2", "frame_10"]
    clips = clips_from(folder, frames=4, stride=4)
    assert [(c.id, c.start, c.fps, c.label) for c in clips] == [
        ("frames@0", 0, None, None), ("frames@4", 4, None, None), ("frames@8", 8, None, None)]
    assert indices(clips_from(folder, frames=4, max_clips_per_video=2)[1]) == [8, 9, 10, 11]
    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(folder / "frame_99.png")
    with pytest.raises(DataError, match="different sizes"):
        read_frame_folder(folder)
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match="no frame images"):
        read_frame_folder(tmp_path / "e")


def test_demo_source_is_bikes(tmp_path):
    names = dict(demo_videos())
    assert names["bikes"].name == "bikes.mp4"
    clips = clips_from("demo", max_clips_per_video=2)
    bikes = [c for c in clips if c.source.endswith("bikes.mp4")]
    assert [c.id for c in bikes] == ["bikes@0", "bikes@224"]
    assert bikes[0].frames.shape == (16, 272, 640, 3) and bikes[0].fps == 25.0
    assert bikes[0].frames.std() > 30  # real footage, not a blank frame
    assert np.abs(bikes[0].frames[1:].astype(int) - bikes[0].frames[:-1]).mean() > 1  # it moves


def test_preprocess_shapes_sampling_and_normalisation():
    prep = Preprocessing("video", (16, 24), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), frames=4)
    white = np.full((8, 30, 40, 3), 255, np.uint8)
    x = preprocess_video(white, prep)
    assert x.shape == (3, 4, 16, 24) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones(()))
    ramp = np.zeros((8, 4, 4, 3), np.uint8)
    ramp[..., 0] = (np.arange(8) * 30)[:, None, None]  # frame t has red 30 t
    y = preprocess_video(ramp, Preprocessing("video", 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), frames=4))
    assert torch.allclose(y[0, :, 0, 0] * 255, torch.tensor([0.0, 60, 150, 210]))  # frames 0, 2, 5, 7
    kin = Preprocessing("video", 2, (0.4, 0.3, 0.2), (0.2, 0.25, 0.5), frames=1)
    block = np.zeros((1, 4, 4, 3), np.uint8)
    block[0, :2, :2] = 100  # area shrink: the top-left output pixel averages this 2x2 block
    block[0, 0, 0] = 200
    z = preprocess_video(block, kin)
    expected = (125 / 255 - np.array([0.4, 0.3, 0.2])) / np.array([0.2, 0.25, 0.5])
    assert np.allclose(z[:, 0, 0, 0].numpy(), expected, atol=1e-3)
    clip = VideoClip("c@0", white, "x.mp4")
    batch = preprocess_clips([clip, white[:3]], prep)
    assert batch.shape == (2, 3, 4, 16, 24)
    with pytest.raises(DataError, match="image input"):
        preprocess_video(white, Preprocessing("image"))
    with pytest.raises(DataError, match="shape"):
        preprocess_video(np.zeros((4, 4, 3), np.uint8)[None, None], prep)


def test_write_video_round_trip(tmp_path):
    t, h, w = 12, 33, 47  # odd sizes: padded to 34x48 for yuv420p
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.dstack([(xx * 5 + 10 * i) % 256, yy * 7, np.full_like(xx, 90)]) for i in range(t)])
    frames = frames.astype(np.uint8)
    out = write_video(tmp_path / "sub" / "clip.mp4", frames, fps=12)
    assert out.is_file() and not list(out.parent.glob(".*partial*"))
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: index before the media
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.width, s.height) == (48, 34)
    back, fps = read_video(out)
    assert back.shape == (t, 34, 48, 3) and fps == 12.0
    assert np.abs(back[:, :h, :w].astype(int) - frames).mean() < 6
    with pytest.raises(DataError, match="frame rate"):
        write_video(tmp_path / "x.mp4", frames, fps=0)


@pytest.mark.skipif(not shutil.which("ffmpeg") and not __import__("importlib").util.find_spec("imageio_ffmpeg"),
                    reason="needs an ffmpeg binary")
def test_display_rotation_is_applied(tmp_path):
    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        ffmpeg = shutil.which("ffmpeg")
    src = pattern(4, 16, 32)  # green on the left half
    plain = write_video(tmp_path / "plain.mp4", src, 10)
    rotated = tmp_path / "rot.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = subprocess.run([ffmpeg, "-v", "error", "-y", "-display_rotation", "90", "-i", str(plain),
                               "-c", "copy", str(rotated)], capture_output=True, timeout=30)
    if done.returncode:
        pytest.skip(f"this ffmpeg cannot set a display rotation: {done.stderr[-200:]!r}")
    video, _ = read_video(rotated)
    assert video.shape == (4, 32, 16, 3)  # 90° counter-clockwise: the left half is now the bottom
    assert video[:, 24:, :, 1].mean() > 150 and video[:, :8, :, 1].mean() < 50
