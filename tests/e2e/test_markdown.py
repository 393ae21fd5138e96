"""Markdown in a real browser: rendered while it streams, sanitised as the stored answer is, swapped
for the server's highlighted HTML without moving, and each code block's copy button.

The answers come from the real openai SDK against the fake OpenAI server (tests/fakes), scripted
here with markdown, code and hostile HTML, and paced so the test can look mid-stream.
"""

from __future__ import annotations

import nh3
import pytest

from chat.markdown import ATTRIBUTES, LINK_REL, TAGS, URL_SCHEMES, render_markdown
from tests.e2e.test_browser import messages_of, sign_up

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o"  # answered by the fake OpenAI server
CODE = 'def greet(name):\n    """Say hello."""\n    return f"Hello, {name}!"  # a comment'
ANSWER = (
    "Here is **bold** text and a list:\n\n"
    "- first item\n- second item with `inline code`\n\n"
    "| name | value |\n|------|------:|\n| a | 1 |\n| b | 2 |\n\n"
    f"```python\n{CODE}\n```\n\n"
    "A closing paragraph with a [link](https://example.com/docs)."
)
HOSTILE = (
    "Careful **now**:\n\n"
    "<img src=x onerror=\"window.__pwned='img'\">\n\n"
    "<script>window.__pwned='script'</script>\n\n"
    "[click me](javascript:window.__pwned='link') and ![pic](javascript:window.__pwned='image')\n\n"
    "```\"><img src=x onerror=\"window.__pwned='lang'\">\nprint('still code')\n```\n\n"
    "<div onmouseover=\"window.__pwned='div'\" style=\"position:fixed;inset:0\">raw html</div>\n\n"
    "<svg onload=\"window.__pwned='svg'\"></svg> <a href=\"javascript:window.__pwned='a'\">raw link</a>\n\n"
    "- the end\n\n" + "And a tail that keeps it streaming a while. " * 6
)

# A canonical form of some HTML as the browser parses it: attributes sorted, Pygments' spans unwrapped
# when asked (the page does not highlight), text nodes joined.
CANON_JS = """
(root, unwrapSpans) => {
  const box = document.createElement('div');
  if (root.nodeType === Node.ELEMENT_NODE) box.append(...root.childNodes); else box.appendChild(root);
  if (unwrapSpans) box.querySelectorAll('span').forEach((s) => s.replaceWith(document.createTextNode(s.textContent)));
  box.normalize();
  box.querySelectorAll('*').forEach((node) => {
    const attrs = Array.from(node.attributes).map((a) => [a.name, a.value]).sort();
    attrs.forEach(([name]) => node.removeAttribute(name));
    attrs.forEach(([name, value]) => node.setAttribute(name, value));
  });
  return box.innerHTML;
}
"""


def chunks(text: str, size: int = 4) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def ask(page, fake_openai, answer: str, *, pace: float = 0.02, question: str = "Show me") -> None:
    fake_openai.script(deltas=chunks(answer), include_usage=False)
    fake_openai.slow_stream(pace)
    page.select_option("#model-select", MODEL)
    page.fill("#message-input", question)
    page.keyboard.press("Enter")


def record_heights(page) -> None:
    """Note the newest answer's height after every change to it, and whether it had finished: the
    last note while streaming and the first once finished bracket the swap to the server's HTML."""
    page.evaluate("""() => {
      window.__notes = [];
      const note = () => {
        const articles = document.querySelectorAll('#transcript article.message-assistant');
        const article = articles[articles.length - 1];
        if (!article) return;
        const content = article.querySelector('.bubble-content');
        const copy = content.cloneNode(true);
        copy.querySelectorAll('.code-copy, .code-language').forEach((n) => n.remove());
        window.__notes.push({
          busy: article.getAttribute('aria-busy') === 'true',
          content: content.getBoundingClientRect().height,
          article: article.getBoundingClientRect().height,
          text: copy.textContent.replace(/\\s+/g, ' ').trim(),
        });
      };
      new MutationObserver(note).observe(document.getElementById('transcript'),
        { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ['aria-busy'] });
    }""")


def finished(page) -> None:
    page.locator('article.message-assistant[aria-busy="false"]').last.wait_for(timeout=20_000)
    page.wait_for_function("() => document.getElementById('chat-status').textContent.includes('Reply finished')")


def test_an_answer_is_markdown_while_it_streams_and_keeps_its_height_when_the_stored_one_swaps_in(
        page, e2e_db, fake_openai, shoot):
    username = sign_up(page, "streamed")
    record_heights(page)
    ask(page, fake_openai, ANSWER)
    # Mid-stream (the bubble still busy, before message_complete): real elements, not signs.
    busy = 'article.message-assistant[aria-busy="true"] .bubble-content'
    page.locator(f"{busy} strong").wait_for()
    page.locator(f"{busy} li").first.wait_for()
    page.locator(f"{busy} table td").first.wait_for()
    page.locator(f"{busy} pre > code.language-python").wait_for()
    assert page.locator(busy).count() == 1
    assert "**" not in page.text_content(busy)
    shoot(page, "markdown-mid-stream")
    finished(page)

    notes = page.evaluate("window.__notes")
    before = [n for n in notes if n["busy"]][-1]
    after = next(n for n in notes if not n["busy"])
    assert before["text"] == after["text"]  # the whole answer was shown before the swap
    assert abs(after["content"] - before["content"]) <= 2, (before, after)
    assert abs(after["article"] - before["article"]) <= 4, (before, after)

    # Stored: the server's HTML, highlighted with Pygments' classes.
    _, answer_row = messages_of(e2e_db, username)
    assert answer_row["content"] == ANSWER
    content = page.locator(f'article[data-message-id="{answer_row["public_id"]}"] .bubble-content')
    assert content.locator("pre code span.k").first.text_content() == "def"
    assert content.locator("pre code span.nf").text_content() == "greet"
    assert content.locator("pre code span.sd").count() == 1
    assert content.locator("strong").text_content() == "bold"
    assert content.locator("li").count() == 2
    assert content.locator("a").get_attribute("rel") == LINK_REL
    shoot(page, "markdown-streamed")


def test_the_page_renders_markdown_as_the_server_does(page):
    sign_up(page, "alike")
    documents = [
        ANSWER, HOSTILE,
        "# One\n## Two\n###### Six\n\nSetext\n======\n\nSub\n---\n",
        "> quoted *em*\n>\n> ```js\n> let a = 1;\n> ```\n",
        "1. one\n   - nested **b**\n   - and ~~struck~~\n2. two\n\n* star\n+ plus\n",
        "Line one  \nhard break\\\nagain\nsoft",
        "Autolinks <https://example.com/a?b=1&c=2> <mailto:me@example.com> www.example.com",
        '![alt *x*](https://example.com/i.png "t") [t](https://example.com \'T\') [r](/rel) [h](#frag)',
        "| a | b | c |\n|:-:|--:|:--|\n| `x\\|y` | ~~z~~ | **w** |\n",
        "&copy; &amp; &#x27; &nbsp; &bogus; <!-- comment --> \\*not em\\*",
        "---\n***\n___\n",
        "    indented code\n    <b>more</b>\n",
        "```\nan unclosed fence\n",
        "Text with [a ref][1] and [another]\n\n[1]: https://example.com \"Title\"\n[another]: <https://example.org>",
        "Émoji 🎉, ｆｕｌｌ width, RTL שלום, and combining e\u0301",
        "[data](data:text/html;base64,PHNjcmlwdD4=) ![img](data:image/png;base64,iVBORw0KGgo=) "
        "[vb](vbscript:x) [file](file:///etc/passwd) [ftp](ftp://example.com)",
        "```c++\nint main() { return 0; }\n```\n\n```unknown-lang\nx\n```\n\n~~~\ntilde\n~~~\n",
    ]
    page_side = page.evaluate(
        f"""async (documents) => {{
          const render = await import('/static/js/chat/render.js');
          const canon = {CANON_JS};
          return documents.map((text) => canon(render.markdownFragment(text), false));
        }}""",
        documents,
    )
    server_side = page.evaluate(
        f"""(htmls) => {{
          const canon = {CANON_JS};
          return htmls.map((html) => {{
            const template = document.createElement('template');
            template.innerHTML = html;  // inert: parsed, nothing runs
            return canon(template.content, true);
          }});
        }}""",
        [render_markdown(text) for text in documents],
    )
    for text, mine, theirs in zip(documents, page_side, server_side, strict=True):
        assert mine == theirs, text

    # Streamed: shown chunk by chunk, block by block (a reference defined last changes an earlier
    # block), each document ends as the server renders it; and so does each step on the way.
    streamed = page.evaluate(
        f"""async (documents) => {{
          const render = await import('/static/js/chat/render.js');
          const canon = {CANON_JS};
          const steps = [];
          const ends = [];
          for (const text of documents) {{
            const node = document.createElement('div');
            for (let end = 1; end <= text.length + 6; end += 7) {{
              await new Promise((done) => render.renderMarkdown(node, text.slice(0, end), done));
              if (text === documents[0]) steps.push([text.slice(0, end), canon(node.cloneNode(true), false)]);
            }}
            ends.push(canon(node, false));
          }}
          return {{ steps, ends }};
        }}""",
        documents,
    )
    assert streamed["ends"] == server_side
    prefixes = [prefix for prefix, _ in streamed["steps"]]
    server_steps = page.evaluate(
        f"""(htmls) => {{
          const canon = {CANON_JS};
          return htmls.map((html) => {{
            const template = document.createElement('template');
            template.innerHTML = html;
            return canon(template.content, true);
          }});
        }}""",
        [render_markdown(prefix) for prefix in prefixes],
    )
    for (prefix, mine), theirs in zip(streamed["steps"], server_steps, strict=True):
        assert mine == theirs, prefix


def test_the_pages_sanitiser_keeps_what_nh3_keeps(page):
    sign_up(page, "sanitiser")
    fragments = [
        '<p onclick="x()">a <b>b</b> <span class="k" style="color:red" id="i">s</span></p>',
        '<a href="javascript:alert(1)" title="t" target="_blank">x</a> <a href="https://e.com" rel="opener">y</a>',
        '<img src="data:image/png;base64,AAAA" alt="a" onerror="x()"> <img src="//e.com/x.png" width="9">',
        "<script>alert(1)</script>after <style>p { color: red }</style>text",
        '<table><tr><td style="x" align="right">1</td></tr></table>',
        '<code class="language-py">x</code><pre data-x="1" class="big">y</pre>',
        '<a href="mailto:a@b.c">m</a><a href="ftp://x">f</a><a href="/rel">r</a><a href="#frag">h</a>',
        '<div><h1 id="x">t</h1><h7>seven</h7></div><form action="/x"><input value="1"><button>b</button></form>',
        '<a href="JaVaScRiPt:alert(1)">j</a><a href=" javascript:alert(1)">k</a><a href="java&#09;script:x">l</a>',
        '<ul><li aria-label="x" data-y="1">i</li></ul><blockquote cite="https://e.com">q</blockquote><del>d</del><s>s</s>',
    ]
    page_side = page.evaluate(
        f"""async (fragments) => {{
          const render = await import('/static/js/chat/render.js');
          const canon = {CANON_JS};
          return fragments.map((html) => canon(render.sanitize(html), false));
        }}""",
        fragments,
    )
    cleaned = [nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES, link_rel=LINK_REL)
               for html in fragments]
    server_side = page.evaluate(
        f"""(htmls) => {{
          const canon = {CANON_JS};
          return htmls.map((html) => {{
            const template = document.createElement('template');
            template.innerHTML = html;
            return canon(template.content, false);
          }});
        }}""",
        cleaned,
    )
    for html, mine, theirs in zip(fragments, page_side, server_side, strict=True):
        assert mine == theirs, html


def transcript_problems(page) -> list[str]:
    return page.evaluate("""() => {
      const problems = [];
      document.querySelectorAll('#transcript .bubble-content, #transcript .bubble-content *').forEach((node) => {
        if (['SCRIPT', 'IFRAME', 'SVG', 'OBJECT', 'EMBED', 'DIV'].includes(node.tagName.toUpperCase())
            && !node.classList.contains('code-block') && !node.classList.contains('bubble-content')) problems.push('element ' + node.tagName);
        Array.from(node.attributes).forEach((a) => {
          if (a.name.toLowerCase().startsWith('on')) problems.push('handler ' + a.name);
          if (a.name === 'style') problems.push('style');
          if (/^\\s*(javascript|data|vbscript):/i.test(a.value)) problems.push('url ' + a.name + '=' + a.value);
        });
      });
      return problems;
    }""")


def test_a_hostile_answer_never_runs_anything_while_it_streams_or_after(page, e2e_db, fake_openai, shoot):
    username = sign_up(page, "hostile")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    ask(page, fake_openai, HOSTILE, pace=0.03)
    busy = 'article.message-assistant[aria-busy="true"] .bubble-content'
    page.locator(f"{busy} pre > code").wait_for()  # the hostile language's block, mid-stream
    page.wait_for_timeout(100)  # an image's onerror fires once its load fails
    assert page.evaluate("window.__pwned") is None
    assert transcript_problems(page) == []
    # The raw HTML shows as text, the javascript: links as their words.
    assert "<img src=x" in page.text_content(busy)
    page.locator(f"{busy} li").wait_for()  # all of it, still streaming
    assert page.evaluate("window.__pwned") is None
    assert transcript_problems(page) == []
    finished(page)
    page.locator('article.message-assistant .bubble-content').hover()
    page.wait_for_timeout(150)
    assert page.evaluate("window.__pwned") is None
    assert transcript_problems(page) == []
    _, answer_row = messages_of(e2e_db, username)
    content = page.locator(f'article[data-message-id="{answer_row["public_id"]}"] .bubble-content')
    assert content.locator("a").count() == 0 and content.locator("img").count() == 0
    assert "print('still code')" in content.locator("pre code").text_content()
    assert content.locator("li").text_content() == "the end"
    assert "raw html</div>" in content.text_content()
    shoot(page, "markdown-hostile")
    page.reload()
    page.wait_for_timeout(150)
    assert page.evaluate("window.__pwned") is None
    assert transcript_problems(page) == []
    assert errors == []


def clipboard_page(browser, server_url, **options):
    context = browser.new_context(base_url=server_url, **options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


def clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def test_the_copy_button_copies_the_exact_code_by_mouse_and_keyboard(browser, server_url, fake_openai, shoot):
    context, page = clipboard_page(browser, server_url, viewport={"width": 1280, "height": 900})
    try:
        sign_up(page, "copier")
        ask(page, fake_openai, ANSWER, pace=0.02)
        # No button while streaming: one appears once the answer is complete.
        page.locator('article.message-assistant[aria-busy="true"] pre').wait_for()
        assert page.locator(".code-copy").count() == 0
        finished(page)
        button = page.get_by_role("button", name="Copy code (python)")
        assert button.count() == 1 and button.text_content().startswith("Copy code")

        button.click()
        page.wait_for_function("() => document.getElementById('chat-status').textContent === 'Code copied to the clipboard.'")
        assert clipboard(page) == CODE
        # It says so, and its name with it, for a couple of seconds.
        assert page.locator(".code-copy").text_content() == "Copied (python)"
        page.get_by_role("button", name="Copy code (python)").wait_for()

        # Keyboard only: Tab from the transcript reaches the button; Enter and Space copy.
        page.evaluate("() => navigator.clipboard.writeText('something else')")
        page.focus("#transcript")
        for _ in range(5):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('code-copy')"):
                break
        assert page.evaluate("() => document.activeElement.textContent").startswith(("Copy code", "Copied"))
        page.keyboard.press("Enter")
        page.wait_for_function("(code) => navigator.clipboard.readText().then((t) => t === code)", arg=CODE)
        page.evaluate("() => navigator.clipboard.writeText('something else')")
        page.keyboard.press("Space")
        page.wait_for_function("(code) => navigator.clipboard.readText().then((t) => t === code)", arg=CODE)
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # the focus is visible

        # A stored answer gets its button on page load, too.
        page.reload()
        page.evaluate("() => navigator.clipboard.writeText('something else')")
        page.get_by_role("button", name="Copy code (python)").click()
        page.wait_for_function("(code) => navigator.clipboard.readText().then((t) => t === code)", arg=CODE)
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1280, 390])
def test_code_blocks_look_right_in_light_and_dark_at_both_widths(browser, server_url, fake_openai, shoot, scheme, width):
    context = browser.new_context(base_url=server_url, viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, f"look{scheme}{width}")
        ask(page, fake_openai, ANSWER, pace=0.001)
        finished(page)
        pre = page.locator("article.message-assistant pre").first
        background = pre.evaluate("(el) => getComputedStyle(el).backgroundColor")
        assert background == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(255, 255, 255)")
        keyword = pre.locator("span.k").first.evaluate("(el) => getComputedStyle(el).color")
        assert keyword == ("rgb(255, 123, 114)" if scheme == "dark" else "rgb(169, 13, 145)")
        # The button and the language stay inside the block, clear of the code's first line.
        box, button = pre.bounding_box(), page.locator(".code-copy").bounding_box()
        code_top = pre.locator("code").bounding_box()["y"]
        assert box["x"] <= button["x"] and button["x"] + button["width"] <= box["x"] + box["width"]
        assert box["y"] <= button["y"] and button["y"] + button["height"] <= code_top
        assert page.locator(".code-language").text_content() == "python"
        # Nothing wider than the screen: a long line scrolls inside its block.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        page.locator(".code-copy").focus()
        shoot(page, f"markdown-code-{width}-{scheme}")
    finally:
        context.close()


def test_the_toggle_turns_the_code_dark_against_a_light_system(page, fake_openai):
    sign_up(page, "toggled")
    ask(page, fake_openai, ANSWER, pace=0.001)
    finished(page)
    page.click("#theme-toggle")
    pre = page.locator("article.message-assistant pre").first
    assert pre.evaluate("(el) => getComputedStyle(el).backgroundColor") == "rgb(13, 17, 23)"
    assert pre.locator("span.k").first.evaluate("(el) => getComputedStyle(el).color") == "rgb(255, 123, 114)"
