// The chat page: one WebSocket to /ws, one text message per protocol line each way
// (docs/PROTOCOL.md, "The web page"). Everything shown is text: textContent, never HTML.
"use strict";

(function () {
  const KEEP = 1000;                    // lines kept on the page
  const lines = document.getElementById("lines");
  const room = document.getElementById("room");
  const members = document.getElementById("members");
  const count = document.getElementById("count");
  const status = document.getElementById("status");
  const prompt = document.getElementById("prompt");
  const input = document.getElementById("input");
  const form = document.getElementById("say");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";

  let ws = null;
  let online = [];                      // handles in join order
  let handle = null;                    // ours, once joined (or the one we last gave)
  let joined = false;
  let asked = false;                    // the server asks for a handle
  let quitting = false;
  let retry = 0;                        // reconnect attempts since the last open
  let resent = false;                   // the handle given again after a reconnect

  const JOINED = /^(\S+) has joined the chat\.$/;
  const LEFT = /^(\S+) has left the chat\.$/;
  const RENAMED = /^(\S+) is now known as (\S+)\.$/;
  const ONLINE = /^Online \((\d+)\): (.*)$/;

  function setStatus(text, lost) {
    status.textContent = text;
    status.classList.toggle("lost", Boolean(lost));
  }

  function addLine(text, kind) {
    const atBottom = room.scrollHeight - room.scrollTop - room.clientHeight < 40;
    const item = document.createElement("li");
    item.textContent = text;
    if (kind) item.className = kind;
    lines.appendChild(item);
    while (lines.childElementCount > KEEP) lines.firstElementChild.remove();
    if (atBottom) room.scrollTop = room.scrollHeight;
  }

  function showMembers() {
    members.replaceChildren(...online.map(function (name) {
      const item = document.createElement("li");
      item.textContent = name;
      return item;
    }));
    count.textContent = String(online.length);
  }

  function kindOf(text) {
    if (text.startsWith("[private")) return "private";
    if (text.startsWith("* ")) return "me";
    if (JOINED.test(text) || LEFT.test(text) || RENAMED.test(text) || ONLINE.test(text)) {
      return "server";
    }
    return text.includes(" says: ") ? "" : "server";
  }

  function track(text) {
    let match;
    if ((match = ONLINE.exec(text))) {
      if (!joined) {
        joined = true;
        asked = false;
        prompt.textContent = handle || "Say";
        input.placeholder = "Say something, or /help";
      }
      online = match[2].replace(/, and \d+ more \(\/who \d+\)$/, "").split(", ");
    } else if ((match = JOINED.exec(text))) {
      if (!online.includes(match[1])) online.push(match[1]);
    } else if ((match = LEFT.exec(text))) {
      online = online.filter(function (name) { return name !== match[1]; });
    } else if ((match = RENAMED.exec(text))) {
      online = online.map(function (name) { return name === match[1] ? match[2] : name; });
      if (match[1] === handle) {
        handle = match[2];
        prompt.textContent = handle;
      }
    } else {
      return;
    }
    showMembers();
  }

  function onMessage(event) {
    const text = String(event.data);
    addLine(text, kindOf(text));
    if (text === "What is your handle?") {
      asked = true;
      joined = false;
      prompt.textContent = "Your handle";
      input.placeholder = "Pick a handle";
      if (handle && !resent) {            // back after a reconnect: the same handle
        resent = true;
        ws.send(handle);
      }
      return;
    }
    track(text);
  }

  function connect() {
    setStatus(retry ? "Reconnecting…" : "Connecting…", retry > 0);
    ws = new WebSocket(url);
    ws.onopen = function () {
      setStatus(retry ? "Reconnected." : "Connected.");
      if (retry) addLine("Reconnected to the server.", "server");
      retry = 0;
      resent = false;
    };
    ws.onmessage = onMessage;
    ws.onclose = function () {
      joined = false;
      online = [];
      showMembers();
      if (quitting) {
        setStatus("You left the chat. Reload the page to come back.", true);
        return;
      }
      const wait = Math.min(10, 2 ** retry);
      if (retry === 0) addLine("Lost the connection to the server; reconnecting…", "server");
      retry += 1;
      setStatus("Disconnected from the server; reconnecting in " + wait + " s…", true);
      setTimeout(connect, wait * 1000);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (!ws || ws.readyState !== WebSocket.OPEN || text.trim() === "") return;
    ws.send(text);
    if (asked) handle = text.trim();
    if (text.trim() === "/quit") quitting = true;
    input.value = "";
  });

  connect();
})();
