"""The explorer's two views: a live ipywidgets view and a self-contained static HTML slider."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from mrtl_core.widgets import WIDGET_MIME, explorer, render_png


def _image(a, kind):
    """A tiny image whose pixels encode the control values, so each frame is distinguishable."""
    img = np.zeros((6, 8), dtype=np.float32)
    img[0, 0] = 1.0
    img[1:, :a] = 0.5 if kind == "x" else 0.25
    return img


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="([^"]+)-data">(.*?)</script>', html, re.S)
    assert m, "no frame data in the html"
    return json.loads(m.group(2).replace("<\\/", "</"))


def test_one_frame_per_combination_and_values_map_to_frames():
    ex = explorer(_image, {"a": [1, 2, 3], "kind": ["x", "y"]}, title="t")
    html = ex.to_html()
    d = _data(html)
    assert len(d["index"]) == 6 and len(d["frames"]) == 6  # all frames differ here
    assert d["strides"] == [2, 1]
    for i, a in enumerate([1, 2, 3]):
        for j, kind in enumerate(["x", "y"]):
            n = i * d["strides"][0] + j * d["strides"][1]
            expected = render_png(_image(a, kind))
            assert base64.b64decode(d["frames"][d["index"][n]]) == expected
            assert ex.frame(a=a, kind=kind) == expected


def test_identical_frames_are_stored_once():
    ex = explorer(lambda a, b: _image(int(a), "x"), {"a": [1.0, 2.0], "b": ["p", "q", "r"]})
    d = _data(ex.to_html())
    assert len(d["index"]) == 6 and len(d["frames"]) == 2
    assert d["index"] == [0, 0, 0, 1, 1, 1]


def test_html_is_self_contained_with_controls():
    ex = explorer(_image, {"a": [1, 2], "kind": ["x", "y"]}, title="Masks <demo>")
    html = ex.to_html()
    assert "http://" not in html and "https://" not in html and "src=\"//" not in html
    assert re.search(r'<script[^>]*\bsrc=', html) is None  # no external scripts
    assert html.count('type="range"') == 1 and html.count("<select") == 1
    assert "Masks &lt;demo&gt;" in html
    assert 'src="data:image/png;base64,' in html


def test_unique_ids_per_explorer():
    a = explorer(_image, {"a": [1, 2], "kind": ["x"]}).to_html()
    b = explorer(_image, {"a": [1, 2], "kind": ["x"]}).to_html()
    ids = lambda h: set(re.findall(r'id="([^"]+)"', h))
    assert ids(a) and not ids(a) & ids(b)


def test_bundle_has_widget_view_and_html():
    ex = explorer(_image, {"a": [1, 2], "kind": ["x", "y"]})
    bundle = ex._repr_mimebundle_()
    assert {"text/html", "text/plain", WIDGET_MIME} <= set(bundle)
    assert "model_id" in bundle[WIDGET_MIME]


def test_live_widget_updates_image():
    ex = explorer(_image, {"a": [1, 2], "kind": ["x", "y"]})
    box = ex.widget()
    image = box.children[-1]
    slider = box.children[0].children[0]
    assert image.value == ex.frame(a=1, kind="x")
    slider.value = 1
    assert image.value == ex.frame(a=2, kind="x")


def test_figures_are_rendered_and_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(r):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, r])
        return fig

    before = len(plt.get_fignums())
    ex = explorer(draw, {"r": [1, 2, 3]})
    assert len(plt.get_fignums()) == before
    assert ex.frame(r=2).startswith(b"\x89PNG")


def test_initial_value_selects_start_frame():
    ex = explorer(_image, {"a": [1, 2, 3], "kind": ["x", "y"]}, initial={"a": 3, "kind": "y"})
    html = ex.to_html()
    first = re.search(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(first) == ex.frame(a=3, kind="y")
    assert 'value="2"' in html and "<option value=\"1\" selected>" in html


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="max_frames"):
        explorer(_image, {"a": list(range(20)), "kind": ["x", "y", "z", "w", "v"]})
    with pytest.raises(ValueError, match="empty"):
        explorer(_image, {"a": [], "kind": ["x"]})
    with pytest.raises(ValueError, match="not one of"):
        explorer(_image, {"a": [1], "kind": ["x"]}).frame(a=5, kind="x")
    with pytest.raises(TypeError, match="Figure or a numpy image"):
        explorer(lambda a: "nope", {"a": [1]})
