"""The book's ``{eval}`` role: one way for a computed number to reach the text, in both places.

A chapter's markdown writes ``{eval}`name``` where ``name`` is a variable that a code cell above it
computes *and* glues under the same name::

    sidelobe_equi = f"{peak_sidelobe(masks['equispaced']):.2f}"
    glue("sidelobe_equi", sidelobe_equi, display=False)

* In JupyterLab the MyST extension (jupyterlab-myst) evaluates ``name`` in the notebook's kernel
  when the markdown cell runs, so the value shows after Run All (``{glue:text}`` it cannot read).
* In the static book this role shows the glued value, exactly as ``{glue:text}`` (text) or
  ``{glue:md}`` (an ``IPython.display.Markdown`` value) would. That works from stored outputs, so
  the book builds with jupyter-cache (``execute_notebooks: cache``) or with execution off, where
  myst-nb's own ``{eval}`` (``inline`` execution only) has no kernel to ask.
* Where myst-nb does run a kernel inline, the kernel is asked, as by myst-nb's role.

A glued Markdown *list* (or several paragraphs) on a line of its own renders as a list: block
content, lifted out of the paragraph the role stood in. A name that is neither glued nor evaluable
is a warning (an error under ``-W``), never blank text.
Loaded as a Sphinx extension after myst-nb (``_config.yml``: ``sphinx.extra_extensions``).
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform
from myst_nb.core.execute.inline import NotebookClientInline
from myst_nb.core.render import MimeData
from myst_nb.core.variables import RetrievalError, format_plain_text
from myst_nb.ext.eval import EvalRoleAny, eval_warning
from myst_nb.ext.glue.utils import retrieve_glue_data

__all__ = ["BookEvalRole", "setup"]


def _has_live_kernel(document: nodes.document) -> bool:
    renderer = document.get("nb_renderer")
    client = getattr(getattr(renderer, "renderer", None), "nb_client", None)
    return isinstance(client, NotebookClientInline)


class BookEvalRole(EvalRoleAny):
    """``{eval}`name```: the kernel's value when one runs inline, else the value glued as ``name``."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        if _has_live_kernel(self.document):
            return super().run()
        key = self.text.strip()
        try:
            result = retrieve_glue_data(self.document, key)
        except RetrievalError:
            return [], [eval_warning(
                f"{{eval}}`{key}`: no kernel runs during this build and no value is glued as {key!r}; "
                f'glue it where it is computed: glue("{key}", {key}, display=False)', self.document, self.line)]
        if "text/markdown" in result.data:
            cell_key = result.nb_renderer.renderer.nb_config.cell_metadata_key
            mime = MimeData("text/markdown", result.data["text/markdown"],
                            cell_metadata={cell_key: {"markdown_format": "commonmark"}},
                            output_metadata=result.metadata, line=self.line)
            text = "".join(result.data["text/markdown"]) if isinstance(result.data["text/markdown"], list) \
                else str(result.data["text/markdown"])
            if _is_block(text):   # a list or several paragraphs: block nodes, lifted out of the paragraph later
                out = result.nb_renderer.render_markdown(mime)
            else:
                out = result.nb_renderer.render_markdown_inline(mime)
            for node in out:
                self.set_source_info(node)
            return out, []
        if "text/plain" not in result.data:
            return [], [eval_warning(f"{{eval}}`{key}`: the glued value has no text/plain or text/markdown form",
                                     self.document, self.line)]
        text = format_plain_text(result.data["text/plain"], "")
        node = nodes.inline(text, text, classes=["pasted-text"])
        self.set_source_info(node)
        return [node], []


def _is_block(markdown: str) -> bool:
    """Whether a glued Markdown value is block content (a list, or more than one paragraph)."""
    lines = [line for line in markdown.strip().splitlines()]
    return any(re.match(r"\s*(?:[*+-]|\d+[.)])\s", line) for line in lines) or "\n\n" in markdown.strip()


class LiftBlocksOutOfParagraphs(SphinxTransform):
    """A paragraph that holds only block content (an ``{eval}`` of a list on a line of its own) is
    replaced by that content, so the list is a list and not a paragraph with literal ``* ``."""

    default_priority = 500

    def apply(self, **kwargs) -> None:
        for para in list(self.document.findall(nodes.paragraph)):
            kids = [c for c in para.children if not (isinstance(c, nodes.Text) and not c.astext().strip())]
            if kids and all(isinstance(c, nodes.Body) for c in kids):
                para.replace_self(kids)


def setup(app):
    app.setup_extension("myst_nb")
    app.add_role("eval", BookEvalRole(), override=True)
    app.add_transform(LiftBlocksOutOfParagraphs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
