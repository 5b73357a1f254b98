"""Write the demo's real-frame bag: 10 CamVid validation frames (every 10th of sequence 0016E5) with their
hand-made labels, as a rosbag2 MCAP that `make demo` replays with the CamVid student.

    python tools/make_camvid_demo_bag.py [--camvid ../shared/datasets/camvid] [--out data/camvid_val10]

Topics: /camera/image_raw/compressed (JPEG, quality 90), /camera/labels (mono8 CamVid ids, 11 = void),
one frame a second (the frames are 1 s apart in the video). Credits: data/camvid_val10/README.md.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2

from seg_perception.io import BagWriter, RosbagsFactory, array_to_compressed, array_to_image, make_header

FRAMES = 10
STAMP0 = 1_200_000_000_000_000_000  # any fixed start: the bag's own timeline
CREDITS = """# CamVid validation frames (10), for the demo

Ten frames of the CamVid validation split (sequence 0016E5, every 10th of its 101 frames, 480x360)
with their hand-made labels (11 classes, 11 = void), as the rosbag2 MCAP bag `make demo` replays.

Source: the Cambridge-driving Labeled Video Database — G. J. Brostow, J. Fauqueur, R. Cipolla,
"Semantic object classes in video: a high-definition ground truth database", Pattern Recognition
Letters 30(2), 2009 — in the 480x360 form and split used by SegNet and ENet. For research use; cite the
paper wherever results on it are shown. Made by `tools/make_camvid_demo_bag.py`.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, default=Path("../shared/datasets/camvid"))
    parser.add_argument("--out", type=Path, default=Path("data/camvid_val10"))
    args = parser.parse_args()
    images = sorted((args.camvid / "val").glob("*.png"))[::10][:FRAMES]
    if len(images) < FRAMES:
        raise SystemExit(f"error: found {len(images)} validation frames in {args.camvid / 'val'}; need {FRAMES}")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    (args.out / "README.md").write_text(CREDITS, encoding="utf-8")
    factory = RosbagsFactory()
    with BagWriter(args.out / "bag", "mcap", compress=True) as writer:
        for i, path in enumerate(images):
            stamp = STAMP0 + i * 1_000_000_000
            header = make_header(factory, stamp, "camera_optical_frame")
            rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            labels = cv2.imread(str(args.camvid / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
            writer.write("/camera/image_raw/compressed", array_to_compressed(rgb, "jpeg", header=header, quality=90),
                         stamp)
            writer.write("/camera/labels", array_to_image(labels, "mono8", header=header), stamp)
    size = sum(f.stat().st_size for f in (args.out / "bag").iterdir())
    print(f"wrote {args.out / 'bag'}: {len(images)} frames, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
