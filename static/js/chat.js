// The chat page: sends over /ws/chat/ and turns the contract's events (API.md) into bubbles and figures.
// Streamed text goes in as textContent; only the server's sanitised `content_html` is ever set as HTML.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("chat-data").textContent);
  var transcript = document.getElementById("transcript");
  var statusLine = document.getElementById("chat-status");
  var errorBox = document.getElementById("chat-error");
  var form = document.getElementById("composer");
  var input = document.getElementById("message-input");
  var modelSelect = document.getElementById("model-select");
  var sendButton = document.getElementById("send-button");
  var stopButton = document.getElementById("stop-button");
  var estimateTokensEl = document.getElementById("next-estimate-tokens");
  var estimateCost = document.getElementById("next-estimate-cost");
  var sidebar = document.getElementById("sidebar");
  var sidebarToggle = document.getElementById("sidebar-toggle");

  var conversationId = data.conversation_id;
  var socket = null;
  var reconnectDelay = 500;
  var queued = [];
  // The exchange in flight: its request id, bubbles and the totals before it.
  var current = null;

  var ERROR_TEXT = {
    INVALID_MESSAGE: "That message can't be sent: it is empty, only spaces, or longer than the limit.",
    UNAUTHENTICATED: "You are signed out. Sign in again to keep chatting.",
    CONVERSATION_NOT_FOUND: "This conversation no longer exists. Start a new chat.",
    MODEL_UNAVAILABLE: "That model is not available right now (its provider has no key). Pick another model.",
    TOKEN_LIMIT_EXCEEDED: "This message would go over your budget.",
    RATE_LIMITED: "Too many requests right now. Wait a moment and try again.",
    PROVIDER_ERROR: "The model's provider failed to answer. Try again, or pick another model.",
    TIMEOUT: "The model did not answer in time. Try again.",
    CANCELLED: "Stopped. The partial answer was kept."
  };

  // --- small helpers ----------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function announce(text) {
    // Clearing first makes screen readers repeat an identical message.
    statusLine.textContent = "";
    window.setTimeout(function () { statusLine.textContent = text; }, 50);
  }

  function showError(text, notice) {
    errorBox.textContent = text;
    errorBox.classList.toggle("notice", !!notice);
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  // Money stays a decimal string: formatted by string rules, never through a float.
  function moneyDisplay(value) {
    if (value === null || value === undefined || value === "") return "";
    var text = String(value);
    if (/e/i.test(text)) return "0.00"; // databases spell zero 0E-8
    var negative = text.charAt(0) === "-";
    if (negative) text = text.slice(1);
    var parts = text.split(".");
    var frac = (parts[1] || "").slice(0, 8).replace(/0+$/, "");
    while (frac.length < 2) frac += "0";
    return (negative ? "-" : "") + (parts[0] || "0") + "." + frac;
  }

  // tokens x (price per million) as an exact decimal string, using BigInt fixed point.
  function costOf(tokens, pricePerMtok) {
    var parts = String(pricePerMtok || "0").split(".");
    var frac = (parts[1] || "");
    var scaled = BigInt((parts[0] || "0") + frac) * BigInt(tokens);
    var places = frac.length + 6; // per million
    var digits = scaled.toString();
    while (digits.length <= places) digits = "0" + digits;
    return digits.slice(0, digits.length - places) + "." + digits.slice(digits.length - places);
  }

  // Port of usage/tokens.py's `estimate_tokens` (its constants come from the server), so the draft is
  // counted as the server will count it. Same operations in the same order, so the floats agree.
  var encoder = new TextEncoder();

  function isLetter(b) { return (b >= 65 && b <= 90) || (b >= 97 && b <= 122); }
  function isDigit(b) { return b >= 48 && b <= 57; }
  function isPunct(b) { return b >= 33 && b <= 126 && !isLetter(b) && !isDigit(b); }

  function runs(bytes, test) {
    var lengths = [];
    var length = 0;
    for (var i = 0; i < bytes.length; i++) {
      if (test(bytes[i])) length++;
      else if (length) { lengths.push(length); length = 0; }
    }
    if (length) lengths.push(length);
    return lengths;
  }

  function leadClass(b) {
    if (b >= 0xC3 && b < 0xCA) return "l";
    if (b >= 0xCD && b < 0xD0) return "g";
    if (b >= 0xD0 && b < 0xD5) return "c";
    if (b >= 0xD6 && b < 0xDC) return "r";
    if (b === 0xE3) return "j";
    if (b >= 0xE4 && b < 0xEA) return "h";
    if (b >= 0xEA && b < 0xEE) return "k";
    if (b >= 0xF0 && b < 0xF5) return "e";
    return "o";
  }

  function roundHalfEven(x) {
    var floor = Math.floor(x);
    var diff = x - floor;
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function estimateTokens(text, k) {
    if (!text) return 0;
    var raw = encoder.encode(text);
    var words = runs(raw, isLetter);
    var camel = 0;
    for (var i = 0; i + 1 < raw.length; i++) {
      if (raw[i] >= 97 && raw[i] <= 122 && raw[i + 1] >= 65 && raw[i + 1] <= 90) camel++;
    }
    var total = words.length + camel;
    var extra = 0;
    words.forEach(function (w) { if (w > k.word_free_chars) extra += w - k.word_free_chars; });
    total += extra * k.word_extra_per_char;
    var digits = runs(raw, isDigit);
    if (digits.length) {
      var digitTokens = 0;
      digits.forEach(function (d) { digitTokens += Math.floor((d + 2) / 3); });
      total += digitTokens;
    }
    var punct = runs(raw, isPunct);
    if (punct.length) {
      var punctChars = 0;
      punct.forEach(function (p) { punctChars += p; });
      total += k.punct_first * punct.length + k.punct_per_extra * (punctChars - punct.length);
    }
    if (raw.indexOf(10) !== -1) {
      var indents = 0;
      for (var j = 0; j + 2 < raw.length; j++) {
        if (raw[j] === 10 && raw[j + 1] === 32 && raw[j + 2] === 32) { indents++; j += 2; }
      }
      total += k.newline * runs(raw, function (b) { return b === 10; }).length + k.indent * indents;
    }
    if (punct.length) {
      // Punctuation glued to the word after it, or to a newline, mostly costs one token for the pair.
      var toWord = 0;
      var toNewline = 0;
      for (var q = 0; q + 1 < raw.length; q++) {
        if (isPunct(raw[q])) {
          if (isLetter(raw[q + 1])) toWord++;
          else if (raw[q + 1] === 10) toNewline++;
        }
      }
      total -= (k.punct_word_merge || 0) * toWord + (k.punct_newline_merge || 0) * toNewline;
    }
    if (raw.length !== Array.from(text).length) {
      if (/[\u00c0-\u024f]/.test(text)) {
        var short = 0;
        words.forEach(function (w) { if (w < 3) short++; });
        total += (words.length - short) * ((k.foreign_word === undefined ? 1.0 : k.foreign_word) - 1.0);
      }
      var counts = {};
      var emojiBmp = 0;
      var joiners = 0;
      for (var m = 0; m < raw.length; m++) {
        var b = raw[m];
        if (b >= 0xC0) counts[leadClass(b)] = (counts[leadClass(b)] || 0) + 1;
        if (b === 0xE2 && m + 1 < raw.length && raw[m + 1] >= 0x98 && raw[m + 1] <= 0x9E) emojiBmp++;
        if (m + 2 < raw.length && ((b === 0xE2 && raw[m + 1] === 0x80 && raw[m + 2] === 0x8D) ||
            (b === 0xEF && raw[m + 1] === 0xB8 && (raw[m + 2] === 0x8F || raw[m + 2] === 0x8E)))) joiners++;
      }
      total += emojiBmp * k.per_char.emoji_bmp + joiners * k.per_char.joiner;
      total -= (emojiBmp + joiners) * k.per_char.o;
      "lgcrjhkeo".split("").forEach(function (cls) {
        if (counts[cls]) total += counts[cls] * k.per_char[cls];
      });
    }
    return Math.max(1, roundHalfEven(total));
  }

  function countTokens(text) {
    if (!text) return 0;
    var k = data.estimator || {};
    if (k.kind === "calibrated") return estimateTokens(text, k);
    return Math.max(1, Math.ceil(Array.from(text).length / (k.chars_per_token || 4)));
  }
  // The browser tests compare this port with the server's counter on a corpus.
  window.chatlimaCountTokens = countTokens;

  function newMessageId() {
    var alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    var random = new Uint8Array(9);
    window.crypto.getRandomValues(random);
    var suffix = "";
    for (var i = 0; i < random.length; i++) suffix += alphabet.charAt(random[i] % alphabet.length);
    return "msg_" + Date.now() + "_" + suffix;
  }

  function modelInfo(id) {
    for (var i = 0; i < data.models.length; i++) {
      if (data.models[i].id === id) return data.models[i];
    }
    return null;
  }

  // --- badges (the same markup as templates/chat/_badges.html) ----------------------------------

  function estimateMarks(node) {
    var mark = el("span", null, "≈");
    mark.setAttribute("aria-hidden", "true");
    node.appendChild(mark);
    node.appendChild(el("span", "visually-hidden", "estimate: "));
  }

  function badge(kind, state, text, attrs) {
    var node = el("span", "badge" + (state === "estimate" || state === "streaming" ? " estimate" : ""));
    node.setAttribute("data-badge", kind);
    node.setAttribute("data-state", state);
    if (state === "estimate" || state === "streaming") estimateMarks(node);
    node.appendChild(document.createTextNode(text));
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function setBadges(article, nodes) {
    var holder = article.querySelector(".badges");
    holder.textContent = "";
    nodes.forEach(function (node, i) {
      if (i) holder.appendChild(document.createTextNode(" "));
      holder.appendChild(node);
    });
  }

  // A call the provider did not bill (it failed before any output): nothing was charged.
  function notChargedFlag(text) {
    var flag = el("span", "badge flag", text);
    flag.setAttribute("data-badge", "status");
    flag.setAttribute("data-state", "not-charged");
    return flag;
  }

  function userBilledBadges(article, promptTokens, source) {
    if (source === "none") return setBadges(article, [notChargedFlag("not charged")]);
    if (promptTokens === null || promptTokens === undefined) return;
    setBadges(article, [badge("input", source === "estimate" ? "estimate" : "billed", promptTokens + " tokens in",
      { "data-tokens": String(promptTokens) })]);
  }

  function streamingBadges(article, promptEstimate, completionEstimate) {
    setBadges(article, [badge("output", "streaming", promptEstimate + " in → " + completionEstimate + " out",
      { "data-tokens": String(completionEstimate), "data-prompt-estimate": String(promptEstimate) })]);
  }

  function assistantBadges(article, message) {
    if (message.figures_source === "none") {
      return setBadges(article, [notChargedFlag(message.status === "cancelled" ? "stopped, not charged" : "failed, not charged")]);
    }
    var isEstimate = message.figures_source === "estimate";
    var state = isEstimate ? "estimate" : "billed";
    var nodes = [];
    if (message.completion_tokens !== null && message.completion_tokens !== undefined) {
      nodes.push(badge("output", state, message.completion_tokens + " tokens out",
        { "data-tokens": String(message.completion_tokens) }));
    }
    if (message.reasoning_tokens) {
      nodes.push(badge("reasoning", "billed", message.reasoning_tokens + " reasoning",
        { "data-tokens": String(message.reasoning_tokens) }));
      if (isEstimate) nodes[nodes.length - 1].className += " estimate";
    }
    if (message.cost !== null && message.cost !== undefined) {
      var cost = moneyDisplay(message.cost);
      nodes.push(badge("cost", state, "$" + cost, { "data-cost": cost }));
    }
    if (message.status === "cancelled") {
      var flag = el("span", "badge flag", "stopped");
      flag.setAttribute("data-badge", "status");
      nodes.push(flag);
    }
    setBadges(article, nodes);
  }

  // --- bubbles ----------------------------------------------------------------------------------

  function addBubble(role, id, text) {
    var empty = document.getElementById("empty-state");
    if (empty) empty.remove();
    var article = el("article", "message message-" + role);
    article.setAttribute("data-role", role);
    if (id) article.setAttribute("data-message-id", id);
    article.appendChild(el("h3", "visually-hidden", role === "user" ? "You" : "Assistant"));
    var content = el("div", "bubble-content " + (role === "user" ? "plain" : "streaming"));
    content.textContent = text || "";
    article.appendChild(content);
    article.appendChild(el("p", "badges"));
    transcript.appendChild(article);
    scrollDown();
    return article;
  }

  function scrollDown() {
    transcript.scrollTop = transcript.scrollHeight;
  }

  function findUserBubble(requestId) {
    var nodes = transcript.querySelectorAll('.message-user[data-message-id]');
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-message-id") === requestId) return nodes[i];
    }
    return null;
  }

  // --- figures ----------------------------------------------------------------------------------

  function setConversationUsage(usage) {
    if (!usage) return;
    document.querySelectorAll("#conv-summary [data-usage]").forEach(function (node) {
      var key = node.getAttribute("data-usage");
      if (usage[key] === undefined) return;
      node.textContent = key === "cost" ? moneyDisplay(usage[key]) : String(usage[key]);
    });
  }

  function addToNumber(id, delta) {
    var node = document.getElementById(id);
    if (node && delta) node.textContent = String((parseInt(node.textContent, 10) || 0) + delta);
  }

  function addMoney(id, before, after) {
    var node = document.getElementById(id);
    if (!node) return;
    // Fixed point at 8 places, as the database keeps money.
    function units(value) {
      var parts = String(moneyDisplay(value) || "0").split(".");
      var frac = ((parts[1] || "") + "00000000").slice(0, 8);
      return BigInt(parts[0] + frac);
    }
    var total = units(node.textContent) + units(after) - units(before);
    var digits = total.toString();
    while (digits.length <= 8) digits = "0" + digits;
    node.textContent = moneyDisplay(digits.slice(0, -8) + "." + digits.slice(-8));
  }

  function updateAccount(before, after) {
    if (!before || !after) return;
    addToNumber("account-input", after.input_tokens - before.input_tokens);
    addToNumber("account-output", after.output_tokens - before.output_tokens);
    addMoney("account-cost", before.cost, after.cost);
  }

  function updateBudget(budget) {
    if (!budget) return;
    var bar = document.getElementById("budget-bar");
    if (bar && budget.token_limit) {
      var percent = Math.min(100, Math.round(100 * budget.total_tokens_used / budget.token_limit));
      bar.value = percent;
      bar.textContent = percent + "%";
    }
    var used = document.getElementById("budget-used");
    if (used) used.textContent = String(budget.total_tokens_used);
    var remaining = document.getElementById("budget-remaining");
    if (remaining && budget.remaining_tokens !== null && budget.remaining_tokens !== undefined) {
      remaining.textContent = String(budget.remaining_tokens);
    }
  }

  function firstLine(text) {
    // The server titles a new conversation with the first line of its first message.
    return text.trim().split("\n")[0].slice(0, 60);
  }

  function updateSidebar(conversation, usage, title, preview) {
    var list = document.getElementById("conversation-list");
    if (!list || !conversation) return;
    var link = list.querySelector('a[data-conversation-id="' + CSS.escape(conversation) + '"]');
    var item;
    if (!link) {
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      item = el("li");
      link = el("a");
      link.href = data.conversation_url_template.replace("__id__", encodeURIComponent(conversation));
      link.setAttribute("data-conversation-id", conversation);
      link.appendChild(el("span", "conv-title", title));
      link.appendChild(el("span", "conv-preview", ""));
      var figures = el("span", "conv-figures figures", "");
      figures.setAttribute("data-field", "figures");
      link.appendChild(figures);
      item.appendChild(link);
    } else {
      item = link.parentNode;
    }
    list.querySelectorAll("a[aria-current]").forEach(function (a) { a.removeAttribute("aria-current"); });
    link.setAttribute("aria-current", "page");
    link.querySelector(".conv-preview").textContent = preview.length > 100 ? preview.slice(0, 100) + "..." : preview;
    if (usage) {
      link.querySelector(".conv-figures").textContent = usage.total_tokens + " tokens · $" + moneyDisplay(usage.cost);
    }
    list.insertBefore(item, list.firstChild);
  }

  // --- the "before sending" estimate --------------------------------------------------------------

  var estimateTimer = null;

  function refreshEstimate() {
    estimateTimer = null;
    var model = modelInfo(modelSelect.value);
    if (!model) return;
    var tokens = model.base_prompt_tokens + countTokens(input.value);
    estimateTokensEl.textContent = String(tokens);
    estimateCost.textContent = moneyDisplay(costOf(tokens, model.input_per_mtok));
  }

  function scheduleEstimate() {
    // Computed locally from the server's history figure: no request per keystroke.
    if (estimateTimer === null) estimateTimer = window.setTimeout(refreshEstimate, 120);
  }

  function growHistory(userText, replyText) {
    // The next send resends this exchange too: add it to every model's base figure.
    data.models.forEach(function (model) {
      model.base_prompt_tokens += countTokens(userText) + countTokens(replyText) + 2 * (model.per_turn_tokens || 0);
    });
  }

  // --- the socket -------------------------------------------------------------------------------

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/ws/chat/");
    socket.addEventListener("open", function () {
      reconnectDelay = 500;
      while (queued.length) socket.send(queued.shift());
    });
    socket.addEventListener("message", function (event) {
      var payload;
      try { payload = JSON.parse(event.data); } catch (err) { return; }
      handle(payload);
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4401) {
        showError(ERROR_TEXT.UNAUTHENTICATED);
        return;
      }
      if (current) failCurrent("The connection dropped while the reply was streaming; what arrived is kept on the server.");
      window.setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 8000);
    });
  }

  function send(frame) {
    var text = JSON.stringify(frame);
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(text);
    else queued.push(text);
  }

  function setBusy(busy) {
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
  }

  function submit() {
    var text = input.value;
    if (!text.trim()) {
      showError(ERROR_TEXT.INVALID_MESSAGE);
      input.focus();
      return;
    }
    if (current) return;
    if (text.length > data.max_message_chars) {
      showError(ERROR_TEXT.INVALID_MESSAGE);
      return;
    }
    clearError();
    var requestId = newMessageId();
    var userBubble = addBubble("user", requestId, text);
    setBadges(userBubble, [(function () {
      var node = el("span", "badge pending", "input tokens pending");
      node.setAttribute("data-badge", "input");
      node.setAttribute("data-state", "pending");
      return node;
    })()]);
    current = { requestId: requestId, userBubble: userBubble, assistant: null, text: "", userText: text,
                before: null, promptEstimate: 0 };
    var frame = { type: "send_message", message: text, model: modelSelect.value, client_message_id: requestId };
    if (conversationId) frame.conversation_id = conversationId;
    setBusy(true);
    send(frame);
    input.value = "";
    input.focus();
    refreshEstimate();
  }

  function failCurrent(text, notice) {
    if (!current) return;
    if (current.assistant) {
      current.assistant.setAttribute("aria-busy", "false");
    }
    if (!current.saved) {
      // Refused before it was stored: say so on the bubble, and give the text back to edit.
      var flag = el("span", "badge flag", "not sent");
      flag.setAttribute("data-badge", "status");
      setBadges(current.userBubble, [flag]);
      current.userBubble.classList.add("status-error");
      if (!input.value) input.value = current.userText;
    }
    showError(text, notice);
    announce(text);
    var ended = current;
    current = null;
    setBusy(false);
    if (ended.saved && conversationId) refreshStored(ended);
  }

  // A stopped or failed exchange is still settled and billed on the server: show what it stored
  // (one request, after the exchange, never per keystroke or chunk).
  function refreshStored(ended) {
    var url = "/api/v1/conversations/" + encodeURIComponent(conversationId);
    window.fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (conversation) {
        if (!conversation) return;
        (conversation.messages || []).forEach(function (message) {
          if (message.role === "user" && message.id === ended.requestId) {
            userBilledBadges(ended.userBubble, message.prompt_tokens, message.figures_source);
          } else if (message.role === "assistant" && message.user_message_id === ended.requestId && ended.assistant) {
            ended.assistant.setAttribute("data-message-id", message.id);
            var content = ended.assistant.querySelector(".bubble-content");
            // What was stored (and billed) may run a few words past what had arrived.
            if ((message.content || "").length > content.textContent.length) content.textContent = message.content;
            assistantBadges(ended.assistant, message);
            if ((message.status === "error" || message.status === "interrupted") && message.figures_source !== "none") {
              var flag = el("span", "badge flag", message.status);
              flag.setAttribute("data-badge", "status");
              ended.assistant.querySelector(".badges").appendChild(flag);
            }
          }
        });
        setConversationUsage(conversation.conversation_usage);
        updateAccount(ended.before, conversation.conversation_usage);
        updateSidebar(conversationId, conversation.conversation_usage, firstLine(ended.userText),
          conversation.last_message_preview || "");
        growHistory(ended.userText, ended.text);
        refreshEstimate();
        scrollDown();
        return window.fetch("/api/v1/budget", { credentials: "same-origin", headers: { Accept: "application/json" } });
      })
      .then(function (response) { return response && response.ok ? response.json() : null; })
      .then(function (budget) { if (budget) updateBudget(budget); })
      .catch(function () { /* the figures are on the server; a reload shows them */ });
  }

  function errorText(payload) {
    var text = ERROR_TEXT[payload.code] || payload.message || "Something went wrong.";
    var details = payload.details || {};
    if (payload.code === "TOKEN_LIMIT_EXCEEDED") {
      var parts = [text];
      if (details.token_limit !== null && details.token_limit !== undefined) {
        parts.push("Your " + (details.period || "") + " limit is " + details.token_limit + " tokens; " +
          (details.tokens_used || 0) + " are used" + (details.tokens_held ? " and " + details.tokens_held + " held" : "") +
          ", and this message needs up to " + (details.tokens_requested || "?") + ".");
      }
      if (details.cost_limit) parts.push("Cost limit $" + moneyDisplay(details.cost_limit) + ", used $" + moneyDisplay(details.cost_used) + ".");
      var reset = details.reset_at || details.period_end;
      if (reset) parts.push("It resets on " + new Date(reset).toLocaleString() + ".");
      return parts.join(" ");
    }
    if (payload.code === "INVALID_MESSAGE" && payload.message) return text + " (" + payload.message + ")";
    if (payload.code === "RATE_LIMITED" && details.reason === "conversation_busy") {
      return "This conversation is still answering a message. Wait for it, or stop it first.";
    }
    return text;
  }

  function handle(payload) {
    var requestId = payload.request_id;
    var mine = current && requestId === current.requestId;
    switch (payload.type) {
      case "message_saved":
        if (!mine) return;
        current.saved = true;
        if (!conversationId) {
          conversationId = payload.conversation_id;
          data.conversation_id = conversationId;
          var url = data.conversation_url_template.replace("__id__", encodeURIComponent(conversationId));
          window.history.replaceState(null, "", url);
          var heading = document.getElementById("chat-title");
          heading.textContent = firstLine(current.userText);
          document.title = heading.textContent + " · Chat · ChatLima";
        }
        break;
      case "stream_start":
        if (!mine) return;
        current.before = payload.conversation_usage;
        current.promptEstimate = payload.estimated_prompt_tokens || 0;
        current.assistant = addBubble("assistant", payload.message_id || null, "");
        current.assistant.setAttribute("aria-busy", "true");
        current.assistant.setAttribute("data-user-message-id", requestId);
        streamingBadges(current.assistant, current.promptEstimate, 0);
        announce("Reply started.");
        break;
      case "stream_chunk":
        if (!mine || !current.assistant) return;
        current.text += payload.chunk || "";
        current.assistant.querySelector(".bubble-content").textContent = current.text;
        streamingBadges(current.assistant, current.promptEstimate, payload.estimated_completion_tokens || 0);
        scrollDown();
        break;
      case "stream_end":
        break;
      case "message_complete":
        if (!mine) return;
        completeExchange(payload);
        break;
      case "error":
        if (current && (!requestId || mine)) {
          if (payload.code === "CANCELLED") {
            if (current.assistant) {
              var article = current.assistant;
              article.classList.add("status-cancelled");
              var flag = el("span", "badge flag", "stopped");
              flag.setAttribute("data-badge", "status");
              var holder = article.querySelector(".badges");
              holder.appendChild(document.createTextNode(" "));
              holder.appendChild(flag);
            }
            // The stored figures of a stopped answer are on the server; a reload shows them.
            failCurrent(ERROR_TEXT.CANCELLED, true);
          } else {
            failCurrent(errorText(payload));
          }
        } else if (!current) {
          showError(errorText(payload));
        }
        break;
      default:
        break;
    }
  }

  function completeExchange(payload) {
    var article = current.assistant || addBubble("assistant", null, "");
    var message = payload.message || {};
    if (message.id) article.setAttribute("data-message-id", message.id);
    var content = article.querySelector(".bubble-content");
    content.classList.remove("streaming");
    // content_html is the server's nh3-sanitised rendering (chat/markdown.py).
    content.innerHTML = message.content_html || "";
    if (!message.content_html) content.textContent = message.content || current.text;
    assistantBadges(article, message);
    article.setAttribute("aria-busy", "false");

    var userBubble = findUserBubble(payload.user_message ? payload.user_message.id : payload.request_id) || current.userBubble;
    var prompt = payload.user_message ? payload.user_message.prompt_tokens : null;
    if (prompt === null || prompt === undefined) prompt = payload.usage ? payload.usage.prompt_tokens : null;
    userBilledBadges(userBubble, prompt, message.figures_source);

    setConversationUsage(payload.conversation_usage);
    updateAccount(current.before, payload.conversation_usage);
    updateBudget(payload.budget);
    updateSidebar(conversationId, payload.conversation_usage, firstLine(current.userText), message.content || current.text);
    growHistory(current.userText, message.content || current.text);
    var tokens = message.completion_tokens;
    current = null;
    setBusy(false);
    refreshEstimate();
    announce("Reply finished" + (tokens !== null && tokens !== undefined ? ": " + tokens + " tokens out." : "."));
  }

  // --- wiring -----------------------------------------------------------------------------------

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && current) {
      event.preventDefault();
      stopButton.click();
      return;
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", scheduleEstimate);
  modelSelect.addEventListener("change", refreshEstimate);
  stopButton.addEventListener("click", function () {
    if (!current) return;
    send({ type: "cancel", request_id: current.requestId });
    announce("Stopping the reply.");
  });
  if (sidebarToggle) {
    sidebarToggle.addEventListener("click", function () {
      var open = sidebar.classList.toggle("open");
      sidebarToggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  refreshEstimate();
  scrollDown();
  connect();
})();
