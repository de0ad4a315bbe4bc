import numpy as np

from conceptmask_tf import visualization


def test_overlay_blends_only_inside_the_mask():
    image = np.zeros((6, 6, 3), np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    out = visualization.overlay_masks(image, [mask], colors=[(200, 100, 0)], alpha=0.5, outline=False)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])  # outside: untouched
    np.testing.assert_array_equal(out[2, 2], [100, 50, 0])  # inside: 0.5 * colour


def test_overlay_outline_marks_the_boundary_not_the_interior():
    image = np.zeros((7, 7, 3), np.uint8)
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    out = visualization.overlay_masks(image, [mask], colors=[(255, 0, 0)], alpha=0.0, outline=True)
    assert tuple(out[1, 3]) == (255, 0, 0)  # on the boundary
    assert tuple(out[3, 3]) == (0, 0, 0)  # interior: alpha 0 leaves it black


def test_heatmap_is_min_max_normalised():
    values = np.array([[0.0, 5.0], [10.0, 10.0]])
    rgb = visualization.heatmap(values)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_contact_sheet_size_follows_grid():
    tile = np.zeros((10, 20, 3), np.uint8)
    sheet = visualization.contact_sheet([[tile, tile, tile], [tile]], [["a", "b", "c"], ["d"]],
                                        tile_size=32, pad=2)
    assert sheet.size == (3 * 34 + 2, 2 * (32 + 14 + 2) + 2)  # one caption line: 12 + 2


def test_long_captions_wrap_within_their_tile_and_lose_no_word():
    from PIL import ImageFont
    font = ImageFont.load_default()
    text = "phrases: striped umbrella (weak_image)"
    lines = visualization.wrap_caption(text, font, 124)
    assert len(lines) > 1 and " ".join(lines) == text
    assert all(font.getlength(line) <= 124 for line in lines)
    cut = visualization.wrap_caption("abcdefghijklmnopqrstuvwxyz", font, 30)
    assert "".join(cut) == "abcdefghijklmnopqrstuvwxyz" and len(cut) > 1
    tile = np.zeros((10, 20, 3), np.uint8)
    sheet = visualization.contact_sheet([[tile], [tile]], [[text], ["d"]], tile_size=128,
                                        pad=2)
    band = visualization.CAPTION_LINE * len(lines) + 2  # every row as tall as the longest
    assert sheet.size == (128 + 4, 2 * (128 + band + 2) + 2)
