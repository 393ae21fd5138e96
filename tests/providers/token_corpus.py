"""A varied corpus for measuring the token estimator against the real BPE tokenizer.

Kinds: English prose, code, CJK, emoji-heavy chat, punctuation-heavy text (markdown tables, JSON,
URLs, regexes), and other scripts (accented Latin, Cyrillic, Greek, Arabic). Used by the accuracy
test and bench/estimator.py.
"""

from __future__ import annotations

CORPUS: dict[str, list[str]] = {
    "english": [
        "The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and the clocks "
        "were striking thirteen. Nobody expected the meeting to run so long, but the agenda had grown "
        "with every email, and by the afternoon even the coffee had given up.",
        "Budgets are easier to keep when you can see them. Every time you send a message, ChatLima "
        "estimates what the prompt will cost, holds that amount against your monthly allowance, and "
        "settles the real figure once the model has answered. If the provider reports cached tokens, "
        "they are billed at the cheaper cached rate.",
        "In 1969, astronauts landed on the Moon for the first time. The mission lasted eight days, "
        "three hours and eighteen minutes, and the crew brought back 21.5 kilograms of lunar material "
        "for scientists to study in laboratories around the world.",
        "Hi! Could you help me write a short cover letter for a junior developer position? I have "
        "two years of experience with Python and Django, I've built a couple of REST APIs, and I "
        "enjoy writing tests. The company values open source contributions.",
        "Photosynthesis converts light energy into chemical energy. Chlorophyll absorbs mostly blue "
        "and red wavelengths, reflecting green, which is why leaves look green to us. The process "
        "releases oxygen as a by-product, which most life on Earth depends upon.",
        "Thanks for the quick reply. I tried restarting the server as you suggested, but the error "
        "still appears whenever I upload a file larger than ten megabytes. Is there a configuration "
        "setting that limits the request size somewhere?",
        "Internationalization, decentralization and incomprehensibilities are long words that a "
        "tokenizer usually splits into several pieces, whereas short everyday words such as cat, "
        "run, blue and house are almost always a single token each.",
    ],
    "code": [
        "def fibonacci(n: int) -> list[int]:\n    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
        "    result = [0, 1]\n    while len(result) < n:\n        result.append(result[-1] + result[-2])\n"
        "    return result[:n]\n\n\nif __name__ == \"__main__\":\n    print(fibonacci(10))\n",
        "class BudgetExceeded(Exception):\n    def __init__(self, used: int, limit: int) -> None:\n"
        "        super().__init__(f\"used {used} of {limit} tokens\")\n        self.used = used\n"
        "        self.limit = limit\n\n\ndef check(budget, tokens):\n    if budget.used + tokens > budget.limit:\n"
        "        raise BudgetExceeded(budget.used, budget.limit)\n",
        "const fetchMessages = async (conversationId, { since = 0, limit = 50 } = {}) => {\n"
        "  const response = await fetch(`/api/v1/conversations/${conversationId}/messages?since=${since}&limit=${limit}`, {\n"
        "    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },\n  });\n"
        "  if (!response.ok) throw new Error(`HTTP ${response.status}`);\n  return (await response.json()).messages;\n};\n",
        "SELECT u.username, date_trunc('day', l.created_at) AS day, SUM(l.total_tokens) AS tokens,\n"
        "       SUM(l.cost_estimate) AS cost\n  FROM api_usage_logs l\n  JOIN accounts_user u ON u.id = l.user_id\n"
        " WHERE l.created_at >= NOW() - INTERVAL '30 days'\n GROUP BY 1, 2\n ORDER BY day DESC, tokens DESC\n LIMIT 100;\n",
        "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; ++i) {\n"
        "        printf(\"arg[%d] = %s\\n\", i, argv[i]);\n    }\n    return 0;\n}\n",
        "fn parse_usage(v: &serde_json::Value) -> Option<Usage> {\n    let p = v.get(\"prompt_tokens\")?.as_u64()?;\n"
        "    let c = v.get(\"completion_tokens\")?.as_u64()?;\n    Some(Usage { prompt: p, completion: c, total: p + c })\n}\n",
    ],
    "cjk": [
        "今天天气很好，我们一起去公园散步吧。公园里有很多花，红的、黄的、白的，非常漂亮。",
        "请帮我把这段话翻译成英文：我们的产品可以帮助用户更好地管理他们的预算和使用情况。",
        "机器学习是人工智能的一个分支，它使计算机能够在没有明确编程的情况下从数据中学习。",
        "東京は日本の首都で、世界でも有数の大都市です。毎年多くの観光客が訪れます。",
        "このメッセージの料金はいくらですか？トークンの数を教えてください。",
        "안녕하세요! 오늘 회의는 오후 세 시에 시작합니다. 늦지 않게 와 주세요.",
        "한국어 문장은 띄어쓰기를 사용하지만, 토큰 수는 영어보다 훨씬 많습니다.",
        "输入一个有效的 Email 地址。确保该值小于或等于 100。这个字段不能为空。",
    ],
    "emoji": [
        "Happy birthday!!! 🎉🎂🥳 Hope you have an amazing day 💖✨",
        "Just landed in Tokyo ✈️🇯🇵 the food is incredible 🍣🍜🍡 can't wait to explore more! 😍",
        "Status: ✅ tests passing, ⚠️ 2 warnings, ❌ 0 failures 🚀🚀🚀",
        "lol 😂😂😂 that's the funniest thing I've seen all week 🤣👏",
        "Weather today: ☀️ 24°C in the morning, 🌧️ rain after 3pm, 🌈 maybe later 🤞",
        "👨‍👩‍👧‍👦 family dinner tonight 🍝🍷 then movie night 🎬🍿",
    ],
    "punctuation": [
        "| Model | Input ($/Mtok) | Output ($/Mtok) |\n|---|---:|---:|\n| gpt-4o | 2.50 | 10.00 |\n"
        "| gemini-2.5-flash | 0.30 | 2.50 |\n| kimi-k2 | 0.60 | 2.50 |",
        "{\"id\": \"chatcmpl-123\", \"choices\": [], \"usage\": {\"prompt_tokens\": 10, \"completion_tokens\": 2, "
        "\"total_tokens\": 12, \"prompt_tokens_details\": {\"cached_tokens\": 0}}}",
        "Visit https://example.com/path/to/page?query=1&sort=desc#section-2 or email support@example.org!!!",
        "Wait... what?!?! No way -- that's (literally) impossible; right?? [citation needed] {sic} <tag/>",
        "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$",
        "=== Results ===\n*** 3 passed ***\n--- 0 failed ---\n>>> done <<<\n########\n::: note :::",
        "**Note:** see `settings.py` (line 42) -> `PROVIDERS[\"openai\"]`; also: ~/.config/app.toml & /etc/app/*.conf.",
    ],
    "other_scripts": [
        "Привет! Как дела? Я хотел бы узнать, сколько стоит одно сообщение в этой программе.",
        "Ça va très bien, merci ! L'été dernier, nous sommes allés à Genève et à Zürich en vélo.",
        "Καλημέρα σας! Η σημερινή συνάντηση θα ξεκινήσει στις τρεις το απόγευμα.",
        "مرحبا! كيف يمكنني مساعدتك اليوم؟ أريد أن أعرف عدد الرموز في هذه الرسالة.",
        "Größenordnung, Übermäßig, Straßenbahnhaltestelle: deutsche Wörter können sehr lang sein.",
    ],
}


def samples() -> list[tuple[str, str]]:
    """(kind, text) for every sample."""
    return [(kind, text) for kind, texts in CORPUS.items() for text in texts]


def message_of(length: int = 2000) -> str:
    """A realistic mixed message of about `length` characters (English, code and a little of the rest)."""
    parts = [CORPUS["english"][1], CORPUS["code"][0], CORPUS["english"][3], CORPUS["punctuation"][0],
             CORPUS["emoji"][1], CORPUS["english"][5], CORPUS["cjk"][0], CORPUS["english"][2]]
    text = "\n\n".join(parts)
    while len(text) < length:
        text += "\n\n" + text
    return text[:length]
