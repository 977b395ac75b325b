"""The README, docs/ and the model cards: links that resolve, sizes that stay small, one card shape."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_LIMIT = 12_000
CARD_LIMIT = 4_000
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    """README.md, every page under docs/ and every model card."""
    return [README, *sorted((ROOT / "docs").rglob("*.md")),
            *sorted((ROOT / "assets" / "models").glob("*/README.md"))]


def cards() -> list[Path]:
    return sorted((ROOT / "assets" / "models").glob("*/README.md"))


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that point into the repository (code blocks, web
    addresses and in-page anchors left out), without their #fragment."""
    targets = LINK.findall(FENCE.sub("", text))
    return [t.split("#", 1)[0] for t in targets
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")]


def test_the_link_finder_sees_links_and_skips_code_and_web_addresses():
    text = ("See [a](docs/a.md#part), ![pic](b.png \"title\") and [web](https://x.org/c.md).\n"
            "```\n[in code](nowhere.md)\n```\n[anchor](#top) [dir](docs/)\n")
    assert relative_links(text) == ["docs/a.md", "b.png", "docs/"]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(page):
    links = relative_links(page.read_text(encoding="utf-8"))
    missing = [t for t in links if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing {missing}"


def test_the_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters, over {README_LIMIT}"
    linked = {(ROOT / t).resolve() for t in relative_links(text)}
    for page in ["faithfulness", "hardening", "scaling", "performance", "formats", "model_cards"]:
        assert (ROOT / "docs" / f"{page}.md").resolve() in linked, page


def test_the_readme_test_command_is_the_one_ci_runs():
    """The second command on the README's first screen is what .ci/run runs, verbatim."""
    head = README.read_text(encoding="utf-8").splitlines()[:25]
    commands = [head[i + 1] for i, line in enumerate(head) if line == "```bash"]
    assert len(commands) == 2 and commands[0].endswith("streamlit run app/Home.py")
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_docs_page_opens_with_a_title_and_a_two_line_summary():
    for page in sorted((ROOT / "docs").rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        name = page.relative_to(ROOT)
        assert lines[0].startswith("# ") and lines[1] == "", name
        assert lines[2].strip() and lines[3].strip() and lines[4] == "", name


def test_every_model_card_has_the_one_shape_and_stays_short():
    shape = re.findall(r"^## .+$", (ROOT / "docs" / "model_cards.md").read_text(), re.MULTILINE)
    assert len(shape) == 6
    assert cards(), "no model cards found"
    for card in cards():
        text = card.read_text(encoding="utf-8")
        name = card.relative_to(ROOT)
        assert len(text) <= CARD_LIMIT, f"{name} has {len(text)} characters, over {CARD_LIMIT}"
        assert text.startswith("# "), name
        assert re.findall(r"^## .+$", text, re.MULTILINE) == shape, name
