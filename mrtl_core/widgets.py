"""Interactive explorers that work in two places: live in JupyterLab, and in the static HTML book.

One call builds both views of the same figure::

    explorer(render, {"acceleration": [2, 4, 8], "kind": ["random", "equispaced"]}, title="Masks")

``render(**values)`` draws one frame (a matplotlib ``Figure`` or an image ``ndarray``). The returned
:class:`Explorer` displays as a MIME bundle with

* ``application/vnd.jupyter.widget-view+json``: an ipywidgets view (sliders for numbers, toggle
  buttons or a dropdown for strings) that JupyterLab renders live;
* ``text/html``: a self-contained page fragment -- every frame of the cartesian product of the
  controls precomputed as a base64 PNG, ``<input type=range>`` / ``<select>`` elements and a few lines
  of inline JavaScript that swap the ``<img>`` source. No external script, no kernel, works offline.
  The book's ``nb_mime_priority_overrides`` pick this one for the static HTML, because plain
  ipywidgets there need require.js and a widget manager from a CDN.

Frames are small (PNG, ``dpi=80`` by default) and identical frames are stored once; the number of
combinations is capped (``max_frames``) with an error that names the controls, since every frame is
rendered up front and inlined into the page.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Explorer", "explorer", "render_png"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_counter = itertools.count()


def render_png(result: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a render result: a matplotlib Figure (closed afterwards) or an image array.

    Arrays: ``(H, W)`` is drawn in grey scale with its own min/max, ``(H, W, 3|4)`` as RGB(A) in [0, 1]
    (floats) or [0, 255] (uint8).
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    buf = io.BytesIO()
    if isinstance(result, Figure):
        result.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(result)
    elif isinstance(result, np.ndarray):
        if result.ndim == 2 or (result.ndim == 3 and result.shape[-1] in (3, 4)):
            arr = np.abs(result) if np.iscomplexobj(result) else result
            plt.imsave(buf, arr, cmap="gray", format="png")
        else:
            raise ValueError(f"render returned an array of shape {result.shape}; expected (H, W) or (H, W, 3|4)")
    else:
        raise TypeError(
            f"render must return a matplotlib Figure or a numpy image, got {type(result).__name__}"
        )
    return buf.getvalue()


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class Explorer:
    """A figure with controls; see the module docstring. Build it with :func:`explorer`."""

    def __init__(
        self,
        render: Callable[..., Any],
        controls: Mapping[str, Sequence[Any]],
        *,
        title: str | None = None,
        precompute: bool = True,
        initial: Mapping[str, Any] | None = None,
        dpi: int = 80,
        max_frames: int = 96,
    ) -> None:
        if not callable(render):
            raise TypeError(f"render must be callable, got {type(render).__name__}")
        if not isinstance(controls, Mapping) or not controls:
            raise ValueError(f"controls must be a non-empty mapping name -> values, got {controls!r}")
        self.render = render
        self.title = title
        self.dpi = int(dpi)
        self.names: list[str] = []
        self.values: list[list[Any]] = []
        for name, vals in controls.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"control name {name!r} must be a Python identifier (it is passed as a keyword)")
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) and not isinstance(vals, np.ndarray):
                raise ValueError(f"controls[{name!r}] must be a sequence of values, got {vals!r}")
            vals = [v.item() if isinstance(v, np.generic) else v for v in vals]
            if not vals:
                raise ValueError(f"controls[{name!r}] is empty")
            if len({_label(v) for v in vals}) != len(vals):
                raise ValueError(f"controls[{name!r}] has repeated values: {vals!r}")
            self.names.append(name)
            self.values.append(vals)
        self.num_frames = math.prod(len(v) for v in self.values)
        if self.num_frames > max_frames:
            sizes = " x ".join(f"{n} ({len(v)})" for n, v in zip(self.names, self.values))
            raise ValueError(
                f"explorer {title!r} would precompute {self.num_frames} frames ({sizes}), more than "
                f"max_frames={max_frames}: every frame is rendered up front and inlined into the page; "
                "use fewer values per control or raise max_frames"
            )
        initial = dict(initial or {})
        unknown = set(initial) - set(self.names)
        if unknown:
            raise ValueError(f"initial names unknown controls {sorted(unknown)}; controls are {self.names}")
        self.initial_index: list[int] = []
        for name, vals in zip(self.names, self.values):
            if name in initial:
                labels = [_label(v) for v in vals]
                if _label(initial[name]) not in labels:
                    raise ValueError(f"initial[{name!r}]={initial[name]!r} is not one of {vals!r}")
                self.initial_index.append(labels.index(_label(initial[name])))
            else:
                self.initial_index.append(0)
        self._png: dict[tuple[int, ...], bytes] = {}
        self.precompute = bool(precompute)
        if self.precompute:
            for idx in itertools.product(*(range(len(v)) for v in self.values)):
                self.png(idx)
        self._uid = None
        self._widget = None

    # -- frames -------------------------------------------------------------------------------
    def _index_of(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        idx = []
        for name, vals in zip(self.names, self.values):
            if name not in values:
                raise ValueError(f"missing value for control {name!r}")
            labels = [_label(v) for v in vals]
            if _label(values[name]) not in labels:
                raise ValueError(f"{name}={values[name]!r} is not one of {vals!r}")
            idx.append(labels.index(_label(values[name])))
        return tuple(idx)

    def png(self, index: Sequence[int]) -> bytes:
        """PNG bytes of the frame at control indices ``index`` (rendered once, then cached)."""
        key = tuple(int(i) for i in index)
        if key not in self._png:
            kwargs = {n: v[i] for n, v, i in zip(self.names, self.values, key)}
            self._png[key] = render_png(self.render(**kwargs), dpi=self.dpi)
        return self._png[key]

    def frame(self, **values: Any) -> bytes:
        """PNG bytes of the frame for the given control values, e.g. ``frame(acceleration=4, kind="random")``."""
        return self.png(self._index_of(values))

    # -- static HTML ---------------------------------------------------------------------------
    def _frame_table(self) -> tuple[list[str], list[int]]:
        """Unique base64 frames and, per combination in ``itertools.product`` order, its frame number."""
        unique: dict[bytes, int] = {}
        frames: list[str] = []
        index: list[int] = []
        combos = itertools.product(*(range(len(v)) for v in self.values))
        if not self.precompute:  # only the initial frame is known without a kernel
            combos = [tuple(self.initial_index)]
        for idx in combos:
            data = self.png(idx)
            if data not in unique:
                unique[data] = len(frames)
                frames.append(base64.b64encode(data).decode("ascii"))
            index.append(unique[data])
        return frames, index

    def uid(self) -> str:
        if self._uid is None:
            digest = hashlib.sha1(repr((self.title, self.names, [[_label(v) for v in vs] for vs in self.values])).encode()).hexdigest()[:8]
            self._uid = f"mrtl-explorer-{digest}-{next(_counter)}"
        return self._uid

    def to_html(self) -> str:
        """The self-contained HTML fragment (frames inlined, inline script, no external resource)."""
        uid = self.uid()
        frames, index = self._frame_table()
        static = self.precompute
        strides = [math.prod(len(v) for v in self.values[k + 1:]) for k in range(len(self.values))]
        start = sum(i * s for i, s in zip(self.initial_index, strides)) if static else 0
        parts = [f'<div class="mrtl-explorer" id="{uid}" style="margin:0.5em 0">']
        if self.title:
            parts.append(f'<div class="mrtl-explorer-title" style="font-weight:600">{html.escape(self.title)}</div>')
        parts.append('<div class="mrtl-explorer-controls" style="display:flex;flex-wrap:wrap;gap:0.4em 1.5em;margin:0.3em 0">')
        for k, (name, vals) in enumerate(zip(self.names, self.values)):
            i0 = self.initial_index[k]
            cid = f"{uid}-c{k}"
            dis = "" if static else " disabled"
            label = f'<label for="{cid}" style="margin-right:0.4em">{html.escape(name.replace("_", " "))}</label>'
            if all(_is_number(v) for v in vals):
                labels = json.dumps([_label(v) for v in vals])
                parts.append(
                    f'<span>{label}<input type="range" id="{cid}" data-ctl="{k}" min="0" max="{len(vals) - 1}" '
                    f'step="1" value="{i0}" data-labels="{html.escape(labels)}" style="vertical-align:middle"{dis}> '
                    f'<output id="{cid}-v" style="font-family:monospace">{html.escape(_label(vals[i0]))}</output></span>'
                )
            else:
                opts = "".join(
                    f'<option value="{j}"{" selected" if j == i0 else ""}>{html.escape(_label(v))}</option>'
                    for j, v in enumerate(vals)
                )
                parts.append(f'<span>{label}<select id="{cid}" data-ctl="{k}"{dis}>{opts}</select></span>')
        parts.append("</div>")
        alt = ", ".join(f"{n}={_label(v[i])}" for n, v, i in zip(self.names, self.values, self.initial_index))
        parts.append(
            f'<img id="{uid}-img" alt="{html.escape((self.title or "frame") + ": " + alt)}" '
            f'src="data:image/png;base64,{frames[index[start]]}" style="max-width:100%;height:auto">'
        )
        if not static:
            parts.append('<div style="font-size:small">(static view: initial frame only; run the notebook to explore)</div>')
        else:
            payload = json.dumps({"frames": frames, "index": index, "strides": strides}).replace("</", "<\\/")
            parts.append(f'<script type="application/json" id="{uid}-data">{payload}</script>')
            parts.append(
                "<script>(function(){"
                f'var id="{uid}",root=document.getElementById(id);if(!root)return;'
                'var d=JSON.parse(document.getElementById(id+"-data").textContent);'
                'var img=document.getElementById(id+"-img");'
                'var ctls=root.querySelectorAll("[data-ctl]");'
                "function update(){var n=0;for(var k=0;k<ctls.length;k++){var c=ctls[k],i=parseInt(c.value,10);"
                "n+=i*d.strides[parseInt(c.dataset.ctl,10)];"
                'if(c.type==="range"){document.getElementById(c.id+"-v").textContent=JSON.parse(c.dataset.labels)[i];}}'
                'img.src="data:image/png;base64,"+d.frames[d.index[n]];}'
                'for(var k=0;k<ctls.length;k++){ctls[k].addEventListener("input",update);ctls[k].addEventListener("change",update);}'
                "})();</script>"
            )
        parts.append("</div>")
        return "".join(parts)

    # -- live view -----------------------------------------------------------------------------
    def widget(self):
        """The ipywidgets view (built once): controls above an ``Image`` that re-renders on change."""
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        controls = []
        for k, (name, vals) in enumerate(zip(self.names, self.values)):
            desc = name.replace("_", " ")
            opts = [(_label(v), j) for j, v in enumerate(vals)]
            if all(_is_number(v) for v in vals):
                c = w.SelectionSlider(options=opts, value=self.initial_index[k], description=desc,
                                      continuous_update=False, style={"description_width": "initial"})
            elif len(vals) <= 4:
                c = w.ToggleButtons(options=opts, value=self.initial_index[k], description=desc,
                                    style={"description_width": "initial"})
            else:
                c = w.Dropdown(options=opts, value=self.initial_index[k], description=desc,
                               style={"description_width": "initial"})
            controls.append(c)
        image = w.Image(value=self.png(self.initial_index), format="png")

        def update(_change=None):
            image.value = self.png([c.value for c in controls])

        for c in controls:
            c.observe(update, names="value")
        children = ([w.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []) + [
            w.HBox(controls, layout=w.Layout(flex_flow="row wrap")), image]
        self._widget = w.VBox(children)
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "text/plain": repr(self),
            "text/html": self.to_html(),
        }
        try:
            widget_bundle = self.widget()._repr_mimebundle_()
        except Exception:  # no ipywidgets or no comm: the static view still works
            widget_bundle = None
        if widget_bundle and WIDGET_MIME in widget_bundle:
            bundle[WIDGET_MIME] = widget_bundle[WIDGET_MIME]
        return bundle

    def __repr__(self) -> str:
        ctl = ", ".join(f"{n}={[_label(v) for v in vals]}" for n, vals in zip(self.names, self.values))
        return f"Explorer({self.title!r}: {ctl}; {self.num_frames} frames)"


def explorer(
    render: Callable[..., Any],
    controls: Mapping[str, Sequence[Any]],
    *,
    title: str | None = None,
    precompute: bool = True,
    initial: Mapping[str, Any] | None = None,
    dpi: int = 80,
    max_frames: int = 96,
) -> Explorer:
    """An interactive figure: ``render(**values)`` for every combination of ``controls``.

    Args:
        render: draws one frame; returns a matplotlib ``Figure`` (closed after saving) or an image array.
        controls: ``name -> values``; all-numeric values become a slider, others a toggle/dropdown.
        title: shown above the controls.
        precompute: render every combination now (needed for the static HTML slider); ``False``
            renders on demand in the live view and puts only the initial frame into the HTML.
        initial: starting value per control (default: each control's first value).
        dpi: resolution of the PNG frames.
        max_frames: refuse (``ValueError``) a larger cartesian product.
    """
    return Explorer(render, controls, title=title, precompute=precompute, initial=initial,
                    dpi=dpi, max_frames=max_frames)
