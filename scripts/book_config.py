"""The book's build configuration: ``_config.yml`` plus the one setting that names the repository.

``_config.yml`` is static YAML and names no repository, so a plain ``jupyter-book build .`` shows
no launch or repository button. Whoever publishes the book sets ``MRTL_REPOSITORY_URL`` (e.g.
``https://github.com/you/mrtl``); ``scripts/build-book.sh`` and the test suite then build with the
config this module derives, which turns on:

- the repository button (any git host),
- the Binder button (any public git repository),
- the Colab button (GitHub only: Colab opens notebooks from GitHub and nothing else),
- the JupyterHub button, only if ``launch_buttons.jupyterhub_url`` is set in ``_config.yml``.

Without the setting every one of them is off, whatever ``_config.yml`` says, so no page links to
a placeholder repository. Usage: ``python scripts/book_config.py OUT.yml`` writes the derived
config (then ``jupyter-book build . --config OUT.yml``).
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "MRTL_REPOSITORY_URL"
BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
_REPOSITORY_BUTTONS = ("use_repository_button", "use_edit_page_button", "use_issues_button")


def repository_url(value: str | None = None) -> str | None:
    """The repository URL from ``value`` or, if None, from ``MRTL_REPOSITORY_URL``; None if unset.

    Raises ValueError for something that is not an http(s) URL with an owner and a name.
    """
    if value is None:
        value = os.environ.get(ENV_VAR)
    value = (value or "").strip().rstrip("/")
    if value.endswith(".git"):
        value = value[: -len(".git")]
    if not value:
        return None
    parts = urlparse(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(parts.path.strip("/").split("/")) < 2:
        raise ValueError(f"{ENV_VAR} must look like https://github.com/you/mrtl, got {value!r}")
    return value


def derive(config: dict, url: str | None) -> dict:
    """A copy of ``config`` with the repository and launch buttons set from ``url`` (or all off)."""
    config = copy.deepcopy(config)
    repo = config.setdefault("repository", {}) or {}
    config["repository"] = repo
    launch = config.setdefault("launch_buttons", {}) or {}
    config["launch_buttons"] = launch
    html = config.setdefault("html", {}) or {}
    config["html"] = html
    if url is None:
        repo["url"] = ""
        for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url", "jupyterlite_url"):
            launch[key] = ""
        launch["thebe"] = False
        for key in _REPOSITORY_BUTTONS:
            html[key] = False
        return config
    repo["url"] = url
    launch["binderhub_url"] = BINDERHUB_URL
    on_github = urlparse(url).netloc.lower() == "github.com"
    launch["colab_url"] = COLAB_URL if on_github else ""
    if not on_github:  # the theme builds Deepnote links for GitHub only (and warns otherwise)
        launch["deepnote_url"] = ""
    html["use_repository_button"] = True
    return config


def load(path: Path = ROOT / "_config.yml", url: str | None = None) -> dict:
    """``_config.yml`` read and derived with ``url`` (None: from ``MRTL_REPOSITORY_URL``)."""
    import yaml

    return derive(yaml.safe_load(Path(path).read_text()), repository_url(url))


def main(argv: list[str]) -> int:
    import yaml

    if len(argv) != 1:
        print("usage: python scripts/book_config.py OUT.yml", file=sys.stderr)
        return 2
    try:
        config = load()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(argv[0]).write_text(yaml.safe_dump(config, sort_keys=False))
    url = config["repository"]["url"]
    print(f"launch buttons for {url}" if url else f"no launch or repository buttons ({ENV_VAR} unset)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
