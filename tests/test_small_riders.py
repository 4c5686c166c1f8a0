"""Small-rider clips: a labelled clip shrunk into a larger frame keeps its rider inside the moved labels."""
import cv2
import numpy as np

from bench.recall import Box
from bench.small_riders import Placement, SmallClip, make_clip
from tests.clips import write_clip


def test_a_shrunk_clip_puts_the_rider_where_its_moved_labels_say(tmp_path):
    frames = []
    for index in range(7):  # a dark 'rider' 20 x 40 px moving right over a mid-grey field
        image = np.full((120, 160, 3), 128, np.uint8)
        image[40:80, 20 + 10 * index:40 + 10 * index] = 0
        frames.append(image)
    write_clip(tmp_path / "rider.mp4", frames)
    write_clip(tmp_path / "other.mp4", frames[:3])  # shorter: it loops
    labels = {"rider": {0: Box(20, 40, 40, 80), 3: None, 6: Box(80, 40, 100, 80)}}
    spec = SmallClip("made", (320, 180), (Placement("rider", 0.5, 200, 100), Placement("other", 0.25, 10, 10)))
    moved = make_clip(spec, tmp_path / "made.avi", labels, snow=tmp_path)
    assert moved == {0: Box(210, 120, 220, 140), 3: None, 6: Box(240, 120, 250, 140)}
    video = cv2.VideoCapture(str(tmp_path / "made.avi"))
    images = [video.read()[1] for _ in range(7)]
    assert not video.read()[0]  # as long as the rider's clip
    assert all(image.shape == (180, 320, 3) for image in images)
    for index in (0, 6):
        box = moved[index]
        inside = images[index][int(box.y0) + 2:int(box.y1) - 2, int(box.x0) + 2:int(box.x1) - 2]
        assert inside.mean() < 40  # the rider
    assert images[0][60:140, 100:190].mean() > 180  # snow between the tiles
    assert images[5][10:40, 10:50].mean() < 160  # the bystander's clip, looped, in its tile
